"""Slice scores -> patient calls -> metrics, shared by training-time validation, ``evaluate`` and ``crossval``.

Slice rule: the paper's (softmax over the positive and the negative prompt, or the image-only classifier's
sigmoid), called at a fixed 0.5. Patient rule: an aggregation of the slice scores (``lgeclip.metrics.aggregate``),
fixed by the recipe or chosen on validation patients (``choose_aggregation``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lgeclip.data.clip import ClipPairs, collate_pairs
from lgeclip.metrics import aggregate, binary_metrics
from lgeclip.models.zeroshot import ZeroShotClassifier
from lgeclip.train.clip_config import EvalCfg
from lgeclip.train.task import to_device


def split_records(cache: str | Path, splits: list[str]) -> list:
    """Cache records whose patient split is in ``splits`` ("all" keeps every record)."""
    from lgeclip.preprocess.cache import read_cache

    recs = read_cache(cache)
    return recs if "all" in splits else [r for r in recs if r.split in splits]


@torch.no_grad()
def score_slices(model: nn.Module, dataset: ClipPairs, task: str, device: torch.device | str,
                 batch_size: int = 64, prompts: str = "paper") -> np.ndarray:
    """P(LGE) per item of an evaluation dataset: zero-shot prompts (clip; ``prompts`` names the prompt set) or the
    classifier's sigmoid."""
    model.eval()
    zs = ZeroShotClassifier(model, prompts=prompts) if task == "clip" else None
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


def patient_metrics_for(records: list, p: np.ndarray, how: str, threshold: float) -> dict[str, float]:
    """Patient-level balanced accuracy / AUROC / sensitivity / specificity and ``score`` for one aggregation.

    ``score`` = (balanced accuracy + AUROC) / 2 (undefined terms count 0): balanced accuracy at the fixed
    threshold is the paper's metric but ties constantly on a small validation split; AUROC breaks the ties."""
    pats = patient_table(records, p, how)
    known = [d for d in pats.values() if d["label"] in ("positive", "negative")]
    out: dict[str, float] = {"balanced_accuracy": float("nan"), "auroc": float("nan")}
    if known:
        m = binary_metrics(np.array([d["label"] == "positive" for d in known]),
                           np.array([d["p_lge"] for d in known]), threshold)
        out.update(balanced_accuracy=m.balanced_accuracy, auroc=m.auroc, sensitivity=m.sensitivity,
                   specificity=m.specificity)
    out["score"] = 0.5 * (np.nan_to_num(out["balanced_accuracy"]) + np.nan_to_num(out["auroc"]))
    return out


def validation_metrics(records: list, p: np.ndarray, cfg: EvalCfg) -> dict[str, float]:
    """Patient-level (report label) and slice-level (pixel truth, where known) metrics, plus the spread of the
    slice scores (``median_margin`` = median |P - 0.5|: near 0 when every score hugs 0.5).

    With ``aggregation: auto`` the patient metrics are those of the best candidate (its index in
    ``cfg.candidates`` is ``aggregation_index``). Undefined values (one class absent) are reported as 0."""
    hows = cfg.candidates if cfg.aggregation == "auto" else [cfg.aggregation]
    per = [patient_metrics_for(records, p, h, cfg.threshold) for h in hows]
    best = max(range(len(hows)), key=lambda i: per[i]["score"])
    out = dict(per[best])
    if cfg.aggregation == "auto":
        out["aggregation_index"] = float(best)
    out["mean_p_lge"] = float(np.mean(p)) if len(p) else float("nan")
    out["median_margin"] = float(np.median(np.abs(p - 0.5))) if len(p) else float("nan")
    st = [(r.scar_truth, pi) for r, pi in zip(records, p, strict=True) if r.scar_truth is not None]
    if st:
        ms = binary_metrics(np.array([t for t, _ in st]), np.array([q for _, q in st]), cfg.threshold)
        out.update(slice_balanced_accuracy=ms.balanced_accuracy, slice_auroc=ms.auroc)
    return {k: (0.0 if v != v else float(v)) for k, v in out.items()}  # NaN -> 0 so "max" monitoring works


def choose_aggregation(records: list, p: np.ndarray, cfg: EvalCfg) -> dict:
    """The aggregation of ``cfg.candidates`` with the best validation ``score`` (first on ties), with every
    candidate's validation metrics: ``{"aggregation": name, "candidates": {name: metrics}}``."""
    per = {h: patient_metrics_for(records, p, h, cfg.threshold) for h in cfg.candidates}
    best = max(cfg.candidates, key=lambda h: per[h]["score"])
    return {"aggregation": best, "chosen_on": "validation patients", "n_slices": len(p),
            "candidates": {h: {k: (None if v != v else v) for k, v in m.items()} for h, m in per.items()}}
