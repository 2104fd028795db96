"""Synthetic scar speed: milliseconds per slice at 224 and 112 px on one CPU thread (``lgeclip bench synth``)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from lgeclip.synth.annulus import annulus_set
from lgeclip.synth.config import SynthScarCfg
from lgeclip.synth.scar import synthesize_scar

TARGET_MS_224 = 2.0


def _one_thread() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _time(slices: list[dict], n: int, cfg: SynthScarCfg, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    args = [(s["image"], s["myocardium"], s["aha"], s["layers"], s["thickness"], s["level"], float(s["pixel_mm"]))
            for s in slices]
    for a in args[:8]:  # warm-up
        synthesize_scar(*a[:6], rng, cfg, pixel_mm=a[6])
    ms = np.empty(n)
    skipped = 0
    for i in range(n):
        a = args[i % len(args)]
        t0 = time.perf_counter_ns()
        _, _, sentence, _ = synthesize_scar(*a[:6], rng, cfg, pixel_mm=a[6])
        ms[i] = (time.perf_counter_ns() - t0) / 1e6
        skipped += sentence is None
    return {"n": n, "median_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
            "mean_ms": round(float(ms.mean()), 4), "max_ms": round(float(ms.max()), 4), "skipped": int(skipped),
            "shape": list(slices[0]["image"].shape)}


def _cache_slices(cache: Path, limit: int = 64) -> list[dict]:
    from lgeclip.preprocess.cache import load_cached_slice, read_cache

    records = read_cache(cache)
    records = [r for r in records if r.label == "negative"] or records
    out = []
    for r in records[:limit]:
        s = load_cached_slice(r.path, oriented=True)
        s["level"] = r.level
        out.append(s)
    if not out:
        raise ValueError(f"{cache}: the cache has no slices to benchmark on")
    return out


def bench_synth(n: int = 500, out: str | Path | None = None, cache: str | Path | None = None,
                cfg: SynthScarCfg | None = None, seed: int = 0) -> dict:
    """Median / p90 ms of ``synthesize_scar`` over ``n`` slices at 224 and 112 px (annulus inputs; 112 mm
    field, so 0.5 and 1.0 mm pixels), plus the slices of ``cache`` when given; one thread. Writes JSON to ``out``."""
    if n < 1:
        raise ValueError(f"bench_synth: n must be >= 1, got {n}")
    _one_thread()
    cfg = cfg or SynthScarCfg()
    result: dict = {"what": "synthesize_scar ms per slice, one thread", "target_ms_224": TARGET_MS_224,
                    "machine": platform.processor() or platform.machine()}
    for size in (224, 112):
        result[f"annulus_{size}"] = _time(annulus_set(size, n=16, seed=seed), n, cfg, seed)
    if cache is not None:
        result["cache"] = _time(_cache_slices(Path(cache)), n, cfg, seed)
        result["cache"]["path"] = str(cache)
    result["meets_target_224"] = result["annulus_224"]["median_ms"] <= TARGET_MS_224
    if out is not None:
        from lgeclip.utils import atomic_write_json

        atomic_write_json(Path(out), result)
    return result
