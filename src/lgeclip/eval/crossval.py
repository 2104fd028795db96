"""`lgeclip crossval`: patient-level k-fold cross-validation of one recipe on one preprocessed cache.

For small labelled cohorts (EMIDEC's 100 development cases) a single held-out split of a dozen patients says
little. Every patient is assigned to one of ``folds`` folds (stratified by the report label); for fold k the
fold's patients are the test split, a stratified ``val_fraction`` of the rest is the validation split (checkpoint
selection) and the remainder trains. Each fold is a *view* of the source cache written to disk
(``OUT/folds/foldK/cache/``: an ``index.csv`` with the fold's split column whose paths point at the source cache's
slices, plus the source ``cache.json``), so ``lgeclip train`` / ``lgeclip evaluate`` run on it unchanged.

Outputs: ``OUT/runs/foldK/`` (run folders, evaluated on their test fold in ``eval_test/``),
``OUT/oof_patients.csv`` (every patient's out-of-fold P(LGE) and call), ``OUT/crossval.json`` (pooled
out-of-fold metrics with a patient-bootstrap 95 % interval, and per-fold mean ± sd). Resumable: a fold whose
``eval_test/summary.json`` exists is not trained again.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from lgeclip.eval.ablate import mean_sd
from lgeclip.preprocess.cache import CacheRecord, read_cache
from lgeclip.utils import atomic_write_json, atomic_write_text, csv_text, get_logger

FOLD_METRICS = ("balanced_accuracy", "auroc", "sensitivity", "specificity", "slice_balanced_accuracy", "slice_auroc")


def patient_labels(records: list[CacheRecord]) -> dict[str, str]:
    """patient_key -> report label (the same on every slice of a patient)."""
    out: dict[str, str] = {}
    for r in records:
        out.setdefault(r.patient_key, r.label)
    return out


def assign_folds(labels: dict[str, str], folds: int, seed: int = 0) -> dict[str, int]:
    """patient_key -> fold in [0, folds), stratified by label: each label's patients are dealt round-robin after
    a seeded shuffle, continuing the deal across labels so that fold sizes differ by at most one."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"{len(labels)} patients cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    i = 0
    for lab in sorted(set(labels.values())):
        keys = sorted(k for k, v in labels.items() if v == lab)
        rng.shuffle(keys)
        for k in keys:
            out[k] = i % folds
            i += 1
    return out


def fold_splits(labels: dict[str, str], fold_of: dict[str, int], fold: int, val_fraction: float = 0.15,
                seed: int = 0) -> dict[str, str]:
    """patient_key -> train / val / test for one fold: the fold is test; per label, round(val_fraction * n) (at
    least one when that label has >= 2 training patients and val_fraction > 0) of the rest are val."""
    rng = np.random.default_rng(seed + 1000 * (fold + 1))
    out = {k: "test" for k, f in fold_of.items() if f == fold}
    for lab in sorted(set(labels.values())):
        keys = sorted(k for k, v in labels.items() if v == lab and fold_of[k] != fold)
        rng.shuffle(keys)
        n_val = int(round(val_fraction * len(keys)))
        if val_fraction > 0 and len(keys) >= 2:
            n_val = min(max(n_val, 1), len(keys) - 1)
        for i, k in enumerate(keys):
            out[k] = "val" if i < n_val else "train"
    return out


def write_fold_cache(source: Path, out: Path, splits: dict[str, str], info: dict) -> Path:
    """A cache folder whose index.csv re-splits ``source``'s records (absolute slice paths, nothing copied)."""
    source, out = Path(source).resolve(), Path(out)
    records = read_cache(source)
    out.mkdir(parents=True, exist_ok=True)
    with (source / "index.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = []
        for row, rec in zip(reader, records, strict=True):
            row["split"] = splits[rec.patient_key]
            row["path"] = str(rec.path.resolve())
            rows.append([row[h] for h in header])
    meta = json.loads((source / "cache.json").read_text())
    meta["crossval"] = {**info, "source_cache": str(source)}
    meta["split"] = {s: sum(splits[r.patient_key] == s for r in records) for s in ("train", "val", "test")}
    atomic_write_json(out / "cache.json", meta)
    if (source / "preprocess.yaml").exists():
        shutil.copyfile(source / "preprocess.yaml", out / "preprocess.yaml")
    atomic_write_text(out / "index.csv", csv_text(header, rows))  # written last: its presence = a complete view
    return out


def _read_patients(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def pooled_metrics(rows: list[dict], threshold: float, n_boot: int = 1000) -> dict:
    """Metrics over the out-of-fold patient table (rows with label positive/negative and p_lge)."""
    from lgeclip.eval.evaluate import patient_metrics

    known = [r for r in rows if r["label"] in ("positive", "negative")]
    y = np.array([r["label"] == "positive" for r in known])
    p = np.array([float(r["p_lge"]) for r in known])
    out = patient_metrics(y, p, threshold, n_boot)
    out["n_patients"] = len(known)
    return out


def crossval(cache: str | Path, out: str | Path, recipe: str = "cpu", folds: int = 5, seed: int = 0,
             val_fraction: float = 0.15, overrides: list[str] | None = None) -> dict:
    """Train and evaluate ``recipe`` on every fold of ``cache``; writes and returns the pooled summary."""
    from lgeclip.eval.evaluate import evaluate_run
    from lgeclip.train.clip import train_clip

    cache, out = Path(cache), Path(out)
    log = get_logger(log_file=out / "crossval.log")
    labels = patient_labels(read_cache(cache))
    fold_of = assign_folds(labels, folds, seed)
    per_fold, oof = [], []
    threshold = 0.5
    for k in range(folds):
        run = out / "runs" / f"fold{k}"
        summary_path = run / "eval_test" / "summary.json"
        fold_cache = out / "folds" / f"fold{k}" / "cache"
        if not (fold_cache / "index.csv").exists():
            splits = fold_splits(labels, fold_of, k, val_fraction, seed)
            write_fold_cache(cache, fold_cache, splits, {"fold": k, "folds": folds, "seed": seed,
                                                         "val_fraction": val_fraction})
        if summary_path.exists():
            log.info(f"fold {k}: done, reusing {summary_path}")
        else:
            ov = [*(overrides or []), f"loop.seed={seed}"]
            log.info(f"fold {k}/{folds}: training {recipe} ({' '.join(ov)})")
            train_clip(recipe, fold_cache, run, overrides=ov, resume=(run / "checkpoints" / "last").exists())
            evaluate_run(run, fold_cache, split="test", out=run / "eval_test")
        s = json.loads(summary_path.read_text())
        threshold = s.get("threshold", threshold)
        per_fold.append({"fold": k, "n_patients": s.get("n_patients"),
                         **{m: s.get(m) for m in FOLD_METRICS}})
        oof += [{**r, "fold": k} for r in _read_patients(run / "eval_test" / "patients.csv")]
    summary = {"cache": str(cache.resolve()), "recipe": recipe, "overrides": overrides or [], "folds": folds,
               "seed": seed, "val_fraction": val_fraction, "threshold": threshold,
               "pooled": pooled_metrics(oof, threshold), "per_fold": per_fold,
               "fold_mean_sd": {m: dict(zip(("mean", "sd"), mean_sd(
                   [f[m] for f in per_fold if f[m] is not None]), strict=True)) for m in FOLD_METRICS}}
    atomic_write_text(out / "oof_patients.csv", csv_text(
        ("patient_key", "label", "p_lge", "call", "n_slices", "fold"),
        [(r["patient_key"], r["label"], r["p_lge"], r["call"], r["n_slices"], r["fold"]) for r in oof]))
    atomic_write_json(out / "crossval.json", summary)
    log.info(f"wrote {out / 'crossval.json'}")
    return summary
