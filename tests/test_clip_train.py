"""CLIP training on a tiny cache: it learns (zero-shot), resumes exactly, writes a pickle-free run folder,
runs under 2-process DDP, and the image-only baseline trains; zero-shot scoring and validation metrics."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _clip_fixtures import make_tiny_cache, make_tiny_text_model, tiny_overrides

from lgeclip.data.clip import ClipPairs
from lgeclip.models.zeroshot import ZeroShotClassifier, prompts_for_level
from lgeclip.preprocess.cache import read_cache
from lgeclip.train.clip import (
    ClipTask,
    EvalCfg,
    load_run_model,
    load_train_config,
    score_slices,
    split_records,
    train_clip,
    validation_metrics,
)
from lgeclip.train.loop import fit
from lgeclip.utils import load_tensors

torch.set_num_threads(2)
FIXTURES = Path(__file__).resolve().parent / "_clip_fixtures.py"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cliptrain")
    return {"cache": make_tiny_cache(root, n_patients=24, size=64, seed=1), "text": make_tiny_text_model(root),
            "small": make_tiny_cache(root, n_patients=8, size=64, seed=2, val_fraction=0.25)}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")


class RecordingTask(ClipTask):
    """Keeps the built model; optionally raises at the n-th training step (a simulated kill)."""

    def __init__(self, *a, crash_at: int | None = None, **kw) -> None:
        super().__init__(*a, **kw)
        self.crash_at, self.calls, self.model = crash_at, 0, None

    def build_model(self):
        self.model = super().build_model()
        return self.model

    def training_step(self, model, batch):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise RuntimeError("simulated kill")
        return super().training_step(model, batch)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _zero_shot(model, cache, cfg, splits) -> tuple[dict, np.ndarray, np.ndarray]:
    recs = split_records(cache, splits)
    p = score_slices(model, ClipPairs(recs, cfg.data, train=False), "clip", "cpu")
    truth = np.array([r.scar_truth for r in recs])
    return validation_metrics(recs, p, EvalCfg()), p, truth


def test_tiny_clip_run_learns_zero_shot(tiny, tmp_path):
    """Loss falls and the zero-shot prompts separate scarred from clean slices (train + val patients)."""
    over = tiny_overrides(tiny["text"], 32, **{"loop.epochs": 20, "loop.max_steps": 0, "loop.batch_size": 16,
                                               "loop.lr": 1e-3, "loop.bf16": True, "data.synth_enabled": False,
                                               "data.augment.enabled": False})
    cfg = load_train_config("smoke", over, tiny["cache"])
    task = RecordingTask(cfg, tiny["cache"])
    task.build_model()
    before, p0, truth = _zero_shot(task.model, tiny["cache"], cfg, ["train", "val"])
    summary = fit(task, cfg.loop, tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert summary["steps"] == 20 * 3 and len(rows) == 20
    first = float(rows[0]["train_contrastive_loss"])
    last = np.mean([float(r["train_contrastive_loss"]) for r in rows[-3:]])
    assert last < first - 0.5, (first, last)
    assert float(rows[-1]["train_caption_loss"]) < 0.7 * float(rows[0]["train_caption_loss"])

    after, p1, _ = _zero_shot(task.model, tiny["cache"], cfg, ["train", "val"])
    # the ranking is learned (patient and slice AUROC); where the scores sit relative to the fixed 0.5 after 60
    # tiny steps is not (balanced accuracy 0.5-1.0 seen across splits and thread counts: every P on one side),
    # the calibration problem issue 11 measures on the phantom; the gap below checks the direction
    assert after["auroc"] >= 0.9 and after["slice_auroc"] >= 0.9, after
    # P(LGE) of scarred slices rises relative to clean ones (similarity to the positive prompt)
    gap0 = p0[truth == 1].mean() - p0[truth == 0].mean()
    gap1 = p1[truth == 1].mean() - p1[truth == 0].mean()
    assert gap1 > gap0 + 0.01 and gap1 > 0, (gap0, gap1)
    assert float(rows[-1]["val_score"]) == pytest.approx(
        0.5 * (float(rows[-1]["val_balanced_accuracy"]) + float(rows[-1]["val_auroc"])))


def _resume_cfg(tiny):
    # text_cache_size=0: with the frozen-text LRU cache on, a caption's features are computed in whichever batch
    # first meets it, so a resumed run (empty cache) computes some in other batches and differs by ~1e-5 (BLAS
    # blocking); without it resumption is bitwise exact, which is what this test pins down.
    over = tiny_overrides(tiny["text"], 32, **{"loop.epochs": 3, "loop.max_steps": 0, "loop.batch_size": 4,
                                               "loop.scheduler": "cosine", "loop.warmup_steps": 2,
                                               "data.synth.prob": 0.7, "model.text_cache_size": 0})
    return load_train_config("smoke", over, tiny["small"])


def test_resume_after_kill_matches_uninterrupted_run(tiny, tmp_path):
    cfg = _resume_cfg(tiny)
    a, b = tmp_path / "a", tmp_path / "b"
    fit(RecordingTask(cfg, tiny["small"]), cfg.loop, a)
    steps = len(_rows(a)) and int(_rows(a)[0]["step"])
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(RecordingTask(cfg, tiny["small"], crash_at=steps + 2), cfg.loop, b)  # dies inside epoch 2
    assert json.loads((b / "checkpoints/last/state.json").read_text())["epoch"] == 1
    out = train_clip(None, tiny["small"], b, overrides=_flat(cfg), resume=True)
    assert out["epochs"] == 3 and out["task"] == "clip"
    for name in ("checkpoints/last/model.safetensors", "model.safetensors"):
        ta, tb = load_tensors(a / name), load_tensors(b / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.allclose(ta[k], tb[k], rtol=0, atol=0), (name, k, (ta[k] - tb[k]).abs().max())
    assert [r["train_loss"][:8] for r in _rows(a)] == [r["train_loss"][:8] for r in _rows(b)]


def _flat(cfg) -> list[str]:
    """The resolved config as dotted overrides (so train_clip rebuilds exactly ``cfg``)."""
    from lgeclip.config import to_dict

    out = []

    def walk(prefix: str, d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                out.append(f"{prefix}{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}")

    walk("", to_dict(cfg))
    return out


def test_run_folder_is_pickle_free_and_reloads(tiny, tmp_path):
    run = tmp_path / "run"
    over = tiny_overrides(tiny["text"], 32, **{"loop.max_steps": 3, "loop.epochs": 1, "loop.batch_size": 4})
    summary = train_clip("smoke", tiny["small"], run, overrides=over)
    assert summary["recipe"] == "smoke" and summary["steps"] == 3
    for name in ("config.yaml", "model.safetensors", "metrics.csv", "train.log", "run.json"):
        assert (run / name).is_file(), name
    assert not [p for p in run.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    log = (run / "train.log").read_text()
    assert "vision encoder: random initialisation" in log and "val_score=" in log

    cfg, model = load_run_model(run)
    assert cfg.name == "smoke" and cfg.model.text_model == tiny["text"] and cfg.model.embed_dim == 32
    saved = load_tensors(run / "model.safetensors")
    state = model.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    recs = read_cache(tiny["small"])[:4]
    p = score_slices(model, ClipPairs(recs, cfg.data, train=False), "clip", "cpu")
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))


def test_image_only_baseline_trains(tiny, tmp_path):
    run = tmp_path / "img"
    over = tiny_overrides(tiny["text"], 32, **{"loop.max_steps": 3, "loop.epochs": 1, "loop.batch_size": 4})
    summary = train_clip("image_only", tiny["small"], run, overrides=over)
    assert summary["task"] == "image_only" and summary["steps"] == 3
    rows = _rows(run)
    assert "train_bce_loss" in rows[0] and "val_auroc" in rows[0]
    cfg, model = load_run_model(run)
    assert cfg.task == "image_only" and type(model).__name__ == "ImageClassifier"


def test_ddp_two_ranks_agree(tiny, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LGECLIP_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES.parent), env.get("PYTHONPATH", "")])
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(FIXTURES),
           "ddp", str(tiny["small"]), tiny["text"], str(out)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish in 240 s:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0, w1 = (load_tensors(out / f"rank{r}.safetensors") for r in (0, 1))
    assert w0.keys() == w1.keys()
    # parameters agree bitwise (DDP averages gradients); BatchNorm running statistics are per-rank (each rank's
    # last forward sees its own half batch; DDP broadcasts rank 0's buffers at the next forward): rank 0's are kept
    stats = [k for k in w0 if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(w0[k], w1[k]) for k in w0 if k not in stats)
    rows = _rows(out)
    assert len(rows) == 2 and float(rows[-1]["train_loss"]) > 0 and "val_score" in rows[-1]
    assert "world_size=2" in (out / "train.log").read_text()
    last = load_tensors(out / "checkpoints/last/model.safetensors")
    assert all(torch.equal(last[k], w0[k]) for k in last)


def test_zero_shot_classifier(tiny):
    cfg = load_train_config("smoke", tiny_overrides(tiny["text"], 32), tiny["small"])
    model = ClipTask(cfg, tiny["small"]).build_model().eval()
    calls = []
    real = model.encode_text
    model.encode_text = lambda texts, normalize=True: (calls.append(list(texts)), real(texts, normalize))[1]
    zs = ZeroShotClassifier(model)
    images = torch.rand(5, 1, 32, 32)
    levels = ["mid", "basal", "mid", "apical", "basal"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        p_bf16 = zs(images, levels)
    p = zs(images, levels)
    assert p.dtype == torch.float32 and p.shape == (5,) and torch.all((p > 0) & (p < 1))
    assert len(calls) == 3 and sorted(c[0] for c in calls) == sorted(prompts_for_level(lv)[0]
                                                                      for lv in ("mid", "basal", "apical"))
    assert all(c[0].endswith(f"This image is from {c[0].split()[-2]} level.") and "no" in c[1].split() for c in calls)
    with torch.no_grad():
        feats = model.encode_image(images)
        emb = model.encode_text(prompts_for_level("basal"))
    manual = torch.softmax(model.get_logit_scale() * feats[1] @ emb.T, -1)[0]
    assert torch.allclose(p[1], manual, atol=1e-5) and torch.allclose(p_bf16, p, atol=0.05)


def test_validation_metrics_and_recipe_seg_path(tiny, tmp_path):
    recs = read_cache(tiny["small"])
    truth = np.array([r.label == "positive" for r in recs], float)
    perfect = validation_metrics(recs, 0.2 + 0.6 * truth, EvalCfg())
    assert perfect["balanced_accuracy"] == perfect["auroc"] == perfect["score"] == 1.0
    flat = validation_metrics(recs, np.full(len(recs), 0.7), EvalCfg())  # all called positive: BA 0.5, AUROC 0.5
    assert flat["balanced_accuracy"] == 0.5 and flat["score"] == 0.5
    one_class = validation_metrics([r for r in recs if r.label == "positive"], np.full(len(recs) // 2, 0.9), EvalCfg())
    assert one_class["score"] == 0.0 and set(one_class) >= {"balanced_accuracy", "auroc", "score"}

    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "cache.json").write_text(json.dumps({"seg_run": "/runs/seg"}))
    cfg = load_train_config("cpu", None, cache)
    assert cfg.model.vision_init == "segmentation" and cfg.model.vision_init_path == "/runs/seg"
    assert cfg.classifier.vision_init_path == "/runs/seg" and cfg.data.image_size == 112 and cfg.loop.bf16
    (cache / "cache.json").write_text(json.dumps({"seg_run": None, "oracle": True}))
    with pytest.raises(ValueError, match="vision_init_path"):
        load_train_config("cpu", None, cache)
    assert load_train_config("cpu", ["model.vision_init_path=/x", "classifier.vision_init=random"],
                             cache).model.vision_init_path == "/x"
