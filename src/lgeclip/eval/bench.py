"""Inference benchmark (``lgeclip bench``): images/s and memory of the zero-shot and image-only paths, the
preprocessing chain's time per slice / study, and the synthetic-scar time.

``bench_all(out, run=None)`` measures a trained run folder, or randomly initialised models of the default
architectures (the real MiniLM text tower, installed locally) at the paper's 224 px. Inputs are random tensors:
speed does not depend on the pixel values, and no data is needed.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

LEVELS = ("basal", "mid", "apical")
WARMUP_BATCHES = 2
# Keep the default run within minutes on a small CPU (a 224 px DenseNet121 batch of 32 takes ~5-10 s on 2 busy
# cores): batches of >= LARGE_BATCH images get one warm-up (the first batch sizes already absorbed the one-time
# costs), and a batch size stops timing once its timed batches took > TIME_BUDGET_S, keeping >= MIN_TIMED of them
# (never triggers on a GPU). ``n_timed`` in the result says how many were used.
LARGE_BATCH = 32
LARGE_BATCH_WARMUP = 1
TIME_BUDGET_S = 10.0
MIN_TIMED = 3

NOTES = {
    "images_per_s": "batch size / median wall time of one forward pass over n_timed batches (after n_warmup); "
                    "random input tensors, torch.inference_mode, model.eval(); a batch size stops after >= 3 "
                    f"timed batches once they took > {TIME_BUDGET_S:g} s (slow CPUs); on a shared machine "
                    "compare load_avg_1min with num_threads (small batches suffer most from busy cores)",
    "zero_shot": "ZeroShotClassifier(model)(images, levels): image tower + similarities to the cached prompt "
                 "embeddings (levels cycle basal/mid/apical within a batch)",
    "prompt_encode_s": "text tower time to encode the [positive, negative] prompts of each level the first time "
                       "(cold cache, once per model and level); later calls reuse the cache",
    "image_only": "torch.sigmoid(classifier(images)['logits'])",
    "peak_memory_gb": "CUDA only: torch.cuda.max_memory_allocated() over the batches of that size, after "
                      "reset_peak_memory_stats() (weights included)",
    "peak_rss_gb": "CPU only: the process's peak resident set size (getrusage ru_maxrss) read after that batch "
                   "size; it never decreases, so it bounds the whole process so far (Python, libraries, both "
                   "models), not one batch",
    "param_memory_gb": "bytes of all parameters and buffers of the model (text tower and caption decoder "
                       "included for CLIP models)",
    "preprocess": "preprocess_slice (both variants + anatomy maps) + the resize to the model input, on a "
                  "synthetic ring slice with given anatomy; anatomy prediction by the nets is not included; "
                  "ms/study = 3 x the median ms/slice",
    "synth": "lgeclip.synth.bench.bench_synth: synthesize_scar ms per slice on one thread",
}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gb(n_bytes: float) -> float:
    return round(n_bytes / 1e9, 4)


def _model_bytes(model: nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _levels(n: int) -> list[str]:
    return [LEVELS[i % len(LEVELS)] for i in range(n)]


def _measure(fn, model: nn.Module, batch_sizes, image_size: int, n_batches: int, device: torch.device,
             autocast, channels_last: bool, extra: dict | None = None) -> dict:
    """images/s and memory of ``fn(images, levels)`` per batch size."""
    gen = torch.Generator().manual_seed(0)
    out: dict = {"param_memory_gb": _gb(_model_bytes(model)),
                 "n_params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3), **(extra or {}),
                 "batches": {}}
    for bs in batch_sizes:
        n_warm = LARGE_BATCH_WARMUP if bs >= LARGE_BATCH else WARMUP_BATCHES
        x = torch.rand(bs, 1, image_size, image_size, generator=gen).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        levels = _levels(bs)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        with torch.inference_mode(), autocast():
            for i in range(n_warm + n_batches):
                _sync(device)
                t0 = time.perf_counter()
                fn(x, levels)
                _sync(device)
                if i >= n_warm:
                    times.append(time.perf_counter() - t0)
                    if len(times) >= MIN_TIMED and sum(times) > TIME_BUDGET_S:
                        break
        med = float(np.median(times))
        row = {"images_per_s": round(bs / med, 3), "ms_per_batch": round(1e3 * med, 3),
               "ms_per_image": round(1e3 * med / bs, 3), "n_timed": len(times), "n_warmup": n_warm}
        if device.type == "cuda":
            row["peak_memory_gb"] = _gb(torch.cuda.max_memory_allocated(device))
        else:
            row["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 4)  # kB on Linux
        out["batches"][str(bs)] = row
    return out


def _prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _synthetic_slice(shape=(160, 180), center=(70.3, 95.6), r_in=14.0, r_out=20.0, rvip_deg=(125.0, 245.0)):
    """A plausible native slice (1.4 mm pixels): bright blood pool, dark ring myocardium, RVIPs on the epicardium."""
    from lgeclip.anatomy.types import AnatomyResult

    rr, cc = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    r = np.hypot(rr - center[0], cc - center[1])
    myo, pool = (r >= r_in) & (r < r_out), r < r_in
    img = 0.4 + 0.05 * np.sin(rr / 5.0) * np.cos(cc / 7.0)
    img = (np.where(pool, 0.9, np.where(myo, 0.15, img)) * 1000.0).astype(np.float32)
    rvip = [(center[0] - r_out * np.sin(np.deg2rad(a)), center[1] + r_out * np.cos(np.deg2rad(a))) for a in rvip_deg]
    return img, (1.4, 1.4), AnatomyResult(myo, pool, rvip[0], rvip[1])


def _preprocess_cfg(run: Path | None, image_size: int):
    """The run's preprocessing settings when they can be found, else the default crop upsampled to ~image_size."""
    from lgeclip.config import from_dict
    from lgeclip.preprocess.config import PreprocessCfg

    if run is not None:
        try:
            from lgeclip.infer.zeroshot import run_provenance

            return from_dict(PreprocessCfg, run_provenance(run)["preprocess"], "preprocess"), "run"
        except (ImportError, FileNotFoundError, KeyError, ValueError) as e:
            source = f"default (run provenance unavailable: {e})"
    else:
        source = "default"
    base = PreprocessCfg()
    # 224 px = the paper's x2 upsampling of the 112 mm crop (configs/preprocess/paper224.yaml)
    return PreprocessCfg(upsample=max(1, round(image_size / base.crop))), source


def bench_preprocess(run: Path | None, image_size: int, n: int = 20) -> dict:
    """Median ms of the inference-time preprocessing chain per slice (levels cycling), and per 3-slice study."""
    from lgeclip.data.clip import model_image
    from lgeclip.preprocess.chain import preprocess_slice

    cfg, source = _preprocess_cfg(run, image_size)
    img, sp, anat = _synthetic_slice()
    for level in LEVELS:  # warm-up (imports, scipy first-call costs)
        model_image(preprocess_slice(img, sp, anat, cfg, level=level).oriented.image, image_size)
    ms = []
    for i in range(n):
        t0 = time.perf_counter()
        pre = preprocess_slice(img, sp, anat, cfg, level=LEVELS[i % 3])
        model_image(pre.oriented.image, image_size)
        ms.append(1e3 * (time.perf_counter() - t0))
    med = float(np.median(ms))
    return {"ms_per_slice": round(med, 3), "ms_per_study": round(3 * med, 3), "p90_ms_per_slice":
            round(float(np.percentile(ms, 90)), 3), "n": n, "native_shape": list(img.shape), "grid": cfg.size,
            "image_size": image_size, "settings": source}


def _run_synth(n: int) -> dict:
    """``bench_synth(n)``, restoring the thread limits it sets process-wide (it pins everything to one thread)."""
    from lgeclip.synth.bench import bench_synth

    n_torch = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        before = {lib["prefix"]: lib["num_threads"] for lib in threadpool_info()}
    except ImportError:  # pragma: no cover
        before = {}
    try:
        return bench_synth(n=n)
    finally:
        torch.set_num_threads(n_torch)
        if before:
            threadpool_limits(limits=before)


def _table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    env = result["environment"]
    mem_key = "peak_memory_gb" if env["gpu"] else "peak_rss_gb"
    t = Table(title=f"lgeclip bench: {env['device']} ({env['num_threads']} threads, load {env['load_avg_1min']}), "
                    f"{env['image_size']} px, {env['precision']}")
    for col in ("path", "batch", "images/s", "ms/batch", mem_key.replace("_", " "), "params GB"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for section in ("zero_shot", "image_only"):
        sec = result.get(section)
        if not sec or "batches" not in sec:
            continue
        for bs, row in sec["batches"].items():
            t.add_row(section, bs, f"{row['images_per_s']:.1f}", f"{row['ms_per_batch']:.1f}",
                      f"{row[mem_key]:.3f}", f"{sec['param_memory_gb']:.3f}")
    console = Console(stderr=True)
    console.print(t)
    pre = result["preprocess"]
    extras = [f"preprocess {pre['ms_per_slice']:.1f} ms/slice, {pre['ms_per_study']:.1f} ms/study"]
    if "prompt_encode_s" in result.get("zero_shot", {}):
        extras.append(f"prompt encoding {result['zero_shot']['prompt_encode_s']:.3f} s (3 levels, once)")
    synth = result.get("synth", {})
    if "annulus_224" in synth:
        extras.append(f"synth {synth['annulus_224']['median_ms']:.2f} ms/slice at 224 px")
    console.print("; ".join(extras))


def bench_all(out: str | Path, run: str | Path | None = None, batch_sizes=(1, 8, 32), image_size: int | None = None,
              n_batches: int = 5, device: str = "auto", text_model: str | None = None, bf16: bool | None = None,
              n_preprocess: int = 20, n_synth: int = 100, num_threads: int | None = None) -> dict:
    """Benchmark inference; write JSON to ``out`` and return it.

    ``run``: a training run folder (its model, image size, bf16 / channels_last settings and preprocessing), else
    random weights of the default architectures at ``image_size`` (default 224). ``text_model`` replaces MiniLM
    in the random CLIP model (tests pass a tiny local folder); ``bf16`` overrides the run's ``loop.bf16``.
    Timing: 2 warm-up batches (1 for >= 32 images), then ``n_batches`` timed ones, cut short (>= 3 kept) once a
    batch size's timed batches exceed 10 s, so the default run stays within minutes on a small CPU.
    ``num_threads``: torch CPU threads during the benchmark (restored after); on a machine whose cores are busy
    with other jobs, 1 thread avoids OpenMP oversubscription, which can slow small batches several-fold."""
    n_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _bench_all(out, run, batch_sizes, image_size, n_batches, device, text_model, bf16, n_preprocess,
                          n_synth)
    finally:
        torch.set_num_threads(n_before)


def _bench_all(out, run, batch_sizes, image_size, n_batches, device, text_model, bf16, n_preprocess,
               n_synth) -> dict:
    from lgeclip.models import ClassifierCfg, ClipModelCfg, create_model
    from lgeclip.models.zeroshot import ZeroShotClassifier
    from lgeclip.utils import atomic_write_json

    t_start = time.perf_counter()
    if n_batches < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"need n_batches >= 1 and batch sizes >= 1, got {n_batches}, {batch_sizes}")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    run = Path(run) if run is not None else None
    cfg = None
    if run is not None:
        from lgeclip.train.clip import load_run_model

        cfg, run_model = load_run_model(run, dev)
        image_size = image_size or cfg.data.image_size
        use_bf16 = cfg.loop.bf16 if bf16 is None else bf16
        channels_last = cfg.loop.channels_last
    else:
        run_model = None
        image_size = image_size or 224
        use_bf16 = bool(bf16)
        channels_last = False
    autocast = (lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    result: dict = {"environment": {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "torch": torch.__version__, "num_threads": torch.get_num_threads(), "gpu": dev.type == "cuda",
        "image_size": image_size, "precision": "bf16 autocast" if use_bf16 else "fp32",
        "channels_last": channels_last, "weights": str(run) if run is not None else "random weights",
        "batch_sizes": list(batch_sizes), "n_batches": n_batches, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}}

    # zero-shot path (CLIP runs / the random default CLIP model)
    if cfg is not None and cfg.task == "image_only":
        result["zero_shot"] = {"skipped": "image_only run: no text tower"}
    else:
        if run_model is not None:
            model, result["zero_shot"] = run_model, {"weights": str(run)}
        else:
            mcfg = ClipModelCfg(vision_init="random", text_model=text_model or "minilm")
            model, result["zero_shot"] = create_model(mcfg), {"weights": "random", "text_model": mcfg.text_model}
        model = _prepare(model, dev, channels_last)
        zs = ZeroShotClassifier(model)
        # fresh model and classifier: both the tower's text cache and the prompt cache are cold here
        enc = {}
        with torch.inference_mode(), autocast():
            for level in LEVELS:
                _sync(dev)
                t0 = time.perf_counter()
                zs.prompt_embeddings(level)
                _sync(dev)
                enc[level] = round(time.perf_counter() - t0, 4)
        result["zero_shot"].update(prompt_encode_s=round(sum(enc.values()), 4), prompt_encode_s_per_level=enc)
        result["zero_shot"].update(_measure(zs, model, batch_sizes, image_size, n_batches, dev, autocast,
                                            channels_last))
        model = zs = None  # free the CLIP model before the classifier is built (memory numbers per path)

    # image-only path (image-only runs / a random classifier with the run's classifier settings or the defaults)
    if cfg is not None and cfg.task == "image_only":
        clf, info = run_model, {"weights": str(run)}
    else:
        ccfg = cfg.classifier if cfg is not None else ClassifierCfg(vision_init="random")
        clf, info = create_model(ccfg, init_weights=False), {"weights": "random"}
    clf = _prepare(clf, dev, channels_last)

    def classify(x: torch.Tensor, _levels: list[str]) -> torch.Tensor:
        return torch.sigmoid(clf(x)["logits"].float())

    result["image_only"] = {**info, **_measure(classify, clf, batch_sizes, image_size, n_batches, dev, autocast,
                                               channels_last)}
    clf = run_model = None  # free the weights before the CPU-only benchmarks

    result["preprocess"] = bench_preprocess(run, image_size, n_preprocess)
    result["synth"] = _run_synth(n_synth)  # last: it pins thread pools to one thread (restored afterwards)
    result["environment"]["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    result["environment"]["bench_s"] = round(time.perf_counter() - t_start, 1)
    result["notes"] = NOTES
    atomic_write_json(Path(out), result)
    _table(result)
    return result
