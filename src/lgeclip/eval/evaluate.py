"""``lgeclip evaluate``: score a split of a preprocessed cache with a run folder's model.

Patient level (the paper's metric): P(LGE) per slice -> patient aggregate (the run's ``eval.aggregation``) ->
call at the run's fixed threshold, against the report label; balanced accuracy with a patient-bootstrap 95 %
interval, AUROC, sensitivity, specificity, confusion. Slice level against pixel truth where the cohort has it
(phantom, EMIDEC): slice balanced accuracy / AUROC, beside the training-free floor on the same slices
(``floor_slice_auroc``: the share of the cached, predicted wall brighter than half-way from its darkest quarter to
the blood pool, ``infer.segments.bright_share``). Writes ``summary.json``, ``patients.csv``, ``slices.csv``.
Refuses (``LeakError``) to score patients that any upstream stage trained or selected on (``eval.leaks``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lgeclip.data.clip import ClipPairs
from lgeclip.infer.segments import bright_share
from lgeclip.metrics import auroc, binary_metrics
from lgeclip.preprocess.cache import load_cached_slice
from lgeclip.train.clip import load_run_model, patient_table, score_slices, split_records
from lgeclip.utils import atomic_write_json, atomic_write_text, csv_text


def bootstrap_ci(y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 1000, seed: int = 0,
                 ) -> dict[str, list[float]]:
    """95 % percentile intervals of balanced accuracy and AUROC, resampling patients with replacement."""
    rng = np.random.default_rng(seed)
    ba, au = [], []
    n = len(y)
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        if y[i].all() or (~y[i]).all():
            continue  # a resample with one class has no balanced accuracy
        m = binary_metrics(y[i], p[i], threshold)
        ba.append(m.balanced_accuracy)
        au.append(m.auroc)
    if not ba:
        return {}
    return {"balanced_accuracy_ci95": [float(np.percentile(ba, 2.5)), float(np.percentile(ba, 97.5))],
            "auroc_ci95": [float(np.percentile(au, 2.5)), float(np.percentile(au, 97.5))]}


def patient_metrics(y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 1000) -> dict:
    """Binary metrics at ``threshold`` (NaN -> None), confusion counts and the patient-bootstrap 95 % intervals."""
    m = binary_metrics(y, p, threshold)
    out = _nan_to_none({k: v for k, v in m.to_dict().items() if k != "n"})
    out["confusion"] = {"tp": m.tp, "fp": m.fp, "tn": m.tn, "fn": m.fn}
    out.update(bootstrap_ci(y, p, threshold, n_boot))
    return out


def _nan_to_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}


def leak_check(run: Path, cache: Path, split: str, allow_leak: bool = False) -> dict:
    """``check_no_leak``'s result; with ``allow_leak`` a leak is recorded (``ok: False``) instead of raised."""
    from lgeclip.eval.leaks import LeakError, check_no_leak

    try:
        return {**check_no_leak(run, cache, split), **({"allow_leak": True} if allow_leak else {})}
    except LeakError as e:
        if not allow_leak:
            raise
        return {"ok": False, "allow_leak": True, "split": split, "error": str(e)}


def evaluate_run(run: str | Path, cache: str | Path, split: str = "test", out: str | Path | None = None,
                 device: str | None = None, n_boot: int = 1000, allow_leak: bool = False) -> dict:
    """Evaluate run folder ``run`` on the ``split`` patients of ``cache``; returns (and writes) the summary.

    First checks that no evaluated patient reached any upstream training / selection (``eval.leaks``); a leak
    raises ``LeakError`` unless ``allow_leak`` (oracle / debugging), and the check is written as ``leak_check``."""
    run, cache = Path(run), Path(cache)
    leaks = leak_check(run, cache, split, allow_leak)
    out = Path(out) if out is not None else run / f"eval_{split}"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg, model = load_run_model(run, device)
    records = split_records(cache, [split])
    if not records:
        raise ValueError(f"{cache}: no slices in split {split!r}")
    t0 = time.perf_counter()
    ds = ClipPairs(records, cfg.data, train=False, seed=0, require_caption=False)
    p = score_slices(model, ds, cfg.task, device, prompts=cfg.eval.prompts)
    seconds = time.perf_counter() - t0

    pats = patient_table(records, p, cfg.eval.aggregation)
    known = {k: d for k, d in pats.items() if d["label"] in ("positive", "negative")}
    y = np.array([d["label"] == "positive" for d in known.values()])
    pp = np.array([d["p_lge"] for d in known.values()])
    summary: dict = {"run": str(run.resolve()), "recipe": cfg.name, "task": cfg.task, "cache": str(cache.resolve()),
                     "split": split, "aggregation": cfg.eval.aggregation, "threshold": cfg.eval.threshold,
                     "n_slices": len(records), "n_patients": len(known),
                     "n_unknown_label_patients": len(pats) - len(known),
                     # spread of the slice scores: near 0 when every P(LGE) hugs 0.5 (calls decided by noise)
                     "median_margin": float(np.median(np.abs(p - 0.5))) if len(p) else None}
    if len(known):
        summary.update(patient_metrics(y, pp, cfg.eval.threshold, n_boot))
    st = [(r.scar_truth, float(pi)) for r, pi in zip(records, p, strict=True) if r.scar_truth is not None]
    floor = np.full(len(records), np.nan)
    if st:
        ms = binary_metrics(np.array([t for t, _ in st]), np.array([q for _, q in st]), cfg.eval.threshold)
        summary.update(_nan_to_none({"slice_balanced_accuracy": ms.balanced_accuracy, "slice_auroc": ms.auroc,
                                     "slice_sensitivity": ms.sensitivity, "slice_specificity": ms.specificity,
                                     "n_slices_with_truth": len(st)}))
        for i, r in enumerate(records):
            if r.scar_truth is not None:
                d = load_cached_slice(r.path, oriented=cfg.data.orientation)
                floor[i] = bright_share(d["image"], d["myocardium"])
        ft = [(r.scar_truth, f) for r, f in zip(records, floor, strict=True) if r.scar_truth is not None]
        # a slice the rule cannot read counts as clean (0), so the floor is scored on the model's slices
        summary["floor_slice_auroc"] = _nan_to_none({"v": auroc(np.array([t for t, _ in ft]), np.nan_to_num(
            np.array([f for _, f in ft]), nan=0.0))})["v"]
        summary["floor_rule"] = ("share of the predicted wall (cache) brighter than half-way from its darkest "
                                 "quarter to the blood pool; training-free")
    for lv in ("basal", "mid", "apical"):
        sub = [(r.scar_truth, float(pi)) for r, pi in zip(records, p, strict=True)
               if r.level == lv and r.scar_truth is not None]
        if sub:
            summary[f"slice_auroc_{lv}"] = _nan_to_none({"v": binary_metrics(
                np.array([t for t, _ in sub]), np.array([q for _, q in sub]), cfg.eval.threshold).auroc})["v"]
    summary["images_per_s"] = round(len(records) / max(seconds, 1e-9), 1)
    summary["leak_check"] = leaks

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "patients.csv", csv_text(("patient_key", "label", "p_lge", "call", "n_slices"), [
        (k, d["label"], f"{d['p_lge']:.4f}", int(d["p_lge"] >= cfg.eval.threshold), len(d["p"]))
        for k, d in sorted(pats.items())]))
    atomic_write_text(out / "slices.csv", csv_text(
        ("slice_id", "patient_key", "level", "label", "scar_truth", "p_lge", "floor"),
        [(r.slice_id, r.patient_key, r.level, r.label, "" if r.scar_truth is None else r.scar_truth, f"{pi:.4f}",
          "" if np.isnan(f) else f"{f:.4f}") for r, pi, f in zip(records, p, floor, strict=True)]))
    atomic_write_json(out / "summary.json", summary)
    return summary
