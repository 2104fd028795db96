"""Run-folder I/O of text-supervised / image-only runs: what a run folder holds and how it is read back.

A run folder alone rebuilds a predictor: ``config.yaml`` (the resolved recipe), ``model.safetensors`` (best
weights), ``inference.json`` (anatomy runs + preprocessing of the cache it trained on) and, when the recipe
lets validation choose the patient aggregation, ``aggregation.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lgeclip.config import from_dict
from lgeclip.models import create_model
from lgeclip.train.clip_config import ClipTrainCfg
from lgeclip.utils import atomic_write_json

AGGREGATION_FILE = "aggregation.json"


def write_inference_info(cache: str | Path, out: str | Path) -> None:
    """``out/inference.json``: the anatomy runs and preprocessing settings of ``cache``, so that the run folder
    alone rebuilds a predictor for new studies (``lgeclip.infer.Predictor.from_run_dir``)."""
    meta = json.loads((Path(cache) / "cache.json").read_text())
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / "inference.json", {"seg_run": meta.get("seg_run"),
                                                     "landmarks_run": meta.get("landmarks_run"),
                                                     "oracle": meta.get("oracle", False),
                                                     "preprocess": meta["settings"]})


def load_run_config(run: str | Path) -> ClipTrainCfg:
    """The resolved ``ClipTrainCfg`` of a run folder (from its ``config.yaml``; no file but YAML/JSON is read).

    ``eval.aggregation: auto`` is replaced by the aggregation recorded in ``aggregation.json`` (chosen on
    validation patients after training); a run without that file falls back to ``max``."""
    import yaml

    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no config.yaml (not a training run folder)")
    task = dict(yaml.safe_load(path.read_text())["task"])
    task.pop("cache", None)
    cfg = from_dict(ClipTrainCfg, task, "config.yaml task")
    if cfg.eval.aggregation == "auto":
        agg = Path(run) / AGGREGATION_FILE
        cfg.eval.aggregation = json.loads(agg.read_text())["aggregation"] if agg.is_file() else "max"
    return cfg


def load_run_model(run: str | Path, device: torch.device | str = "cpu") -> tuple[ClipTrainCfg, nn.Module]:
    """``(cfg, model)`` of a run folder: the model rebuilt from ``config.yaml`` (no vision init, nothing
    downloaded) with ``model.safetensors`` loaded strictly, in eval mode."""
    from lgeclip.train.checkpoint import load_model_weights

    cfg = load_run_config(run)
    model = create_model(cfg.model if cfg.task == "clip" else cfg.classifier, init_weights=False)
    load_model_weights(model, Path(run) / "model.safetensors", strict=True)
    return cfg, model.to(device).eval()
