"""Text-supervised training (CLIP + CoCa caption loss) and the image-only baseline, on a preprocessed cache.

``train_clip(recipe, cache, out)`` resolves a typed ``ClipTrainCfg`` from a YAML recipe (overrides of
``configs/train/base.yaml``), builds the task and hands it to the generic loop. A recipe that asks for
``vision_init: segmentation`` without a path gets the segmentation run that produced the cache
(``cache.json``), so the run folder records exactly which encoder it started from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from lgeclip.config import apply_overrides, from_dict, read_recipe, to_dict
from lgeclip.data.clip import ClipPairs, DataCfg, collate_pairs
from lgeclip.metrics import aggregate, binary_metrics
from lgeclip.models import ClassifierCfg, ClipModelCfg, create_model
from lgeclip.models.losses import ClassifierLoss, CocaLoss, caption_ids_from_texts
from lgeclip.models.zeroshot import ZeroShotClassifier
from lgeclip.train.loop import LoopCfg, fit
from lgeclip.train.task import Task, to_device
from lgeclip.utils import get_logger


@dataclass
class EvalCfg:
    """How slice scores become patient calls (used in validation and evaluation)."""

    aggregation: str = "max"  # patient P(LGE) from its slices: max (any slice positive), mean, top2
    threshold: float = 0.5  # fixed, never fitted on data

    def __post_init__(self) -> None:
        aggregate([0.5], self.aggregation)  # raises on an unknown name
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")


@dataclass
class ClipTrainCfg:
    """One training recipe: task kind, data, model (CLIP or classifier) and loop settings."""

    task: Literal["clip", "image_only"] = "clip"
    name: str = "proposed"  # recipe name, written to run.json and tables
    data: DataCfg = field(default_factory=DataCfg)
    model: ClipModelCfg = field(default_factory=ClipModelCfg)
    classifier: ClassifierCfg = field(default_factory=ClassifierCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    loop: LoopCfg = field(default_factory=LoopCfg)

    def __post_init__(self) -> None:
        if self.task not in ("clip", "image_only"):
            raise ValueError(f"task must be clip or image_only, got {self.task!r}")


RECIPE_DIR = Path(__file__).resolve().parents[3] / "configs" / "train"


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe path, or a bare name looked up in ``configs/train/<name>.yaml``."""
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = RECIPE_DIR / f"{recipe}.yaml"
    if cand.exists():
        return cand
    raise FileNotFoundError(f"recipe {recipe!r} not found (looked at {p} and {cand})")


def load_train_config(recipe: str | Path | None, overrides: list[str] | None = None,
                      cache: str | Path | None = None) -> ClipTrainCfg:
    """Resolve a recipe (+ dotted overrides) into a validated ``ClipTrainCfg``; fills the seg-init path from
    the cache's ``cache.json`` when the recipe asks for ``vision_init: segmentation`` without a path."""
    data = read_recipe(resolve_recipe(recipe)) if recipe else {}
    data = apply_overrides(data, overrides)
    if cache is not None:
        meta_path = Path(cache) / "cache.json"
        seg_run = json.loads(meta_path.read_text()).get("seg_run") if meta_path.exists() else None
        for section in ("model", "classifier"):
            sec = data.setdefault(section, {})
            if sec.get("vision_init") == "segmentation" and not sec.get("vision_init_path"):
                if not seg_run:
                    raise ValueError(f"{section}.vision_init=segmentation needs vision_init_path, and {cache} "
                                     f"records no seg_run (oracle-built cache?): pass {section}.vision_init_path="
                                     f"<seg run> or {section}.vision_init=random")
                sec["vision_init_path"] = str(seg_run)
    return from_dict(ClipTrainCfg, data)


def split_records(cache: str | Path, splits: list[str]) -> list:
    """Cache records whose patient split is in ``splits`` ("all" keeps every record)."""
    from lgeclip.preprocess.cache import read_cache

    recs = read_cache(cache)
    return recs if "all" in splits else [r for r in recs if r.split in splits]


@torch.no_grad()
def score_slices(model: nn.Module, dataset: ClipPairs, task: str, device: torch.device | str,
                 batch_size: int = 64) -> np.ndarray:
    """P(LGE) per item of an evaluation dataset: zero-shot prompts (clip) or the classifier's sigmoid."""
    model.eval()
    zs = ZeroShotClassifier(model) if task == "clip" else None
    out: list[np.ndarray] = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = to_device(collate_pairs(items), device)
        if zs is not None:
            p = zs(batch["image"], batch["level"])
        else:
            p = torch.sigmoid(model(batch["image"])["logits"].float())
        out.append(p.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def patient_table(records: list, p: np.ndarray, how: str = "max") -> dict[str, dict]:
    """Per-patient aggregated P(LGE) and report label."""
    by: dict[str, dict] = {}
    for r, pi in zip(records, p, strict=True):
        d = by.setdefault(r.patient_key, {"label": r.label, "p": []})
        d["p"].append(float(pi))
    for d in by.values():
        d["p_lge"] = aggregate(np.array(d["p"]), how)
    return by


def validation_metrics(records: list, p: np.ndarray, cfg: EvalCfg) -> dict[str, float]:
    """Patient-level (report label) and slice-level (pixel truth, where known) metrics.

    ``score`` = (patient balanced accuracy + patient AUROC) / 2, the default model-selection metric: balanced
    accuracy at the fixed threshold is the paper's metric but ties constantly on a small validation split;
    the threshold-free AUROC breaks those ties. Undefined values (one class absent) are reported as 0."""
    pats = patient_table(records, p, cfg.aggregation)
    known = [d for d in pats.values() if d["label"] in ("positive", "negative")]
    out: dict[str, float] = {"balanced_accuracy": float("nan"), "auroc": float("nan")}
    if known:
        m = binary_metrics(np.array([d["label"] == "positive" for d in known]),
                           np.array([d["p_lge"] for d in known]), cfg.threshold)
        out.update(balanced_accuracy=m.balanced_accuracy, auroc=m.auroc, sensitivity=m.sensitivity,
                   specificity=m.specificity)
    out["score"] = 0.5 * (np.nan_to_num(out["balanced_accuracy"]) + np.nan_to_num(out["auroc"]))
    out["mean_p_lge"] = float(np.mean(p)) if len(p) else float("nan")
    st = [(r.scar_truth, pi) for r, pi in zip(records, p, strict=True) if r.scar_truth is not None]
    if st:
        ms = binary_metrics(np.array([t for t, _ in st]), np.array([q for _, q in st]), cfg.threshold)
        out.update(slice_balanced_accuracy=ms.balanced_accuracy, slice_auroc=ms.auroc)
    return {k: (0.0 if v != v else float(v)) for k, v in out.items()}  # NaN -> 0 so "max" monitoring works


class ClipTask(Task):
    """CLIP + CoCa on (slice, sentence) pairs, or the image-only classifier on report labels."""

    def __init__(self, cfg: ClipTrainCfg, cache: str | Path) -> None:
        self.cfg = cfg
        self.cache = Path(cache)
        self.name = cfg.name
        self.loss = (CocaLoss.from_cfg(cfg.model) if cfg.task == "clip"
                     else ClassifierLoss(cfg.classifier.pos_weight))

    def build_model(self) -> nn.Module:
        model = create_model(self.cfg.model if self.cfg.task == "clip" else self.cfg.classifier)
        report = getattr(model, "init_report", None)
        if report is not None and os.environ.get("RANK", "0") == "0":
            get_logger("lgeclip.train").info(report.summary())
        return model

    def train_dataset(self) -> ClipPairs:
        recs = split_records(self.cache, self.cfg.data.train_splits)
        if self.cfg.task == "image_only":
            recs = [r for r in recs if r.label in ("positive", "negative")]
        if not recs:
            raise ValueError(f"{self.cache}: no training slices in splits {self.cfg.data.train_splits}")
        return ClipPairs(recs, self.cfg.data, train=True, seed=self.cfg.loop.seed,
                         require_caption=self.cfg.task == "clip")

    def val_dataset(self) -> ClipPairs | None:
        recs = split_records(self.cache, [self.cfg.data.val_split])
        return ClipPairs(recs, self.cfg.data, train=False, seed=self.cfg.loop.seed) if recs else None

    def collate(self, items: list) -> dict:
        return collate_pairs(items)

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        if self.cfg.task == "clip":
            out = model(batch["image"], batch["caption"])
            ids = caption_ids_from_texts(batch["caption"], device=batch["image"].device)
            return self.loss(out, ids)
        # image-only: a synthetic scar turns a report-negative slice into a positive example
        labels = torch.where(batch["synthetic"], torch.ones_like(batch["label"]), batch["label"])
        return self.loss(model(batch["image"]), labels)

    def validate(self, model: nn.Module, dataset: ClipPairs, device: torch.device) -> dict[str, float]:
        p = score_slices(model, dataset, self.cfg.task, device)
        return validation_metrics(dataset.records, p, self.cfg.eval)

    def config_dict(self) -> dict:
        d = to_dict(self.cfg)
        d["cache"] = str(self.cache.resolve())
        return d


def write_inference_info(cache: str | Path, out: str | Path) -> None:
    """``out/inference.json``: the anatomy runs and preprocessing settings of ``cache``, so that the run folder
    alone rebuilds a predictor for new studies (``lgeclip.infer.Predictor.from_run_dir``)."""
    from lgeclip.utils import atomic_write_json

    meta = json.loads((Path(cache) / "cache.json").read_text())
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / "inference.json", {"seg_run": meta.get("seg_run"),
                                                     "landmarks_run": meta.get("landmarks_run"),
                                                     "oracle": meta.get("oracle", False),
                                                     "preprocess": meta["settings"]})


def train_clip(config: str | Path | None, cache: str | Path, out: str | Path, overrides: list[str] | None = None,
               resume: bool = False) -> dict:
    """Train the recipe ``config`` on ``cache`` into run folder ``out`` (torchrun-compatible); returns a summary."""
    cfg = load_train_config(config, overrides, cache)
    task = ClipTask(cfg, cache)
    if os.environ.get("RANK", "0") == "0":
        write_inference_info(cache, out)
    summary = fit(task, cfg.loop, out, resume=resume)
    return {**summary, "run": str(out), "recipe": cfg.name, "task": cfg.task}


def load_run_config(run: str | Path) -> ClipTrainCfg:
    """The resolved ``ClipTrainCfg`` of a run folder (from its ``config.yaml``; no file but YAML is read)."""
    import yaml

    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no config.yaml (not a training run folder)")
    task = dict(yaml.safe_load(path.read_text())["task"])
    task.pop("cache", None)
    return from_dict(ClipTrainCfg, task, "config.yaml task")


def load_run_model(run: str | Path, device: torch.device | str = "cpu") -> tuple[ClipTrainCfg, nn.Module]:
    """``(cfg, model)`` of a run folder: the model rebuilt from ``config.yaml`` (no vision init, nothing
    downloaded) with ``model.safetensors`` loaded strictly, in eval mode."""
    from lgeclip.train.checkpoint import load_model_weights

    cfg = load_run_config(run)
    model = create_model(cfg.model if cfg.task == "clip" else cfg.classifier, init_weights=False)
    load_model_weights(model, Path(run) / "model.safetensors", strict=True)
    return cfg, model.to(device).eval()
