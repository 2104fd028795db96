"""One patient split per cohort, written once and read by every stage (nnU-Net's ``splits_final.json`` idea).

``COHORT_DIR/splits.json`` deals the cohort's patients into ``n_folds`` folds stratified by report label; fold f
tests its own patients, validates on a stratified ``val_fraction`` of the rest and trains on the remainder.
The anatomy nets (``data.fold``), the preprocessed cache (``fold``) and cross-validation all read their split
from this file, so a patient tested by one stage was never trained on or selected on by another. Keys are the
salted pseudonymous ``patient_key`` of the manifest (no PHI); the studies of a patient with several
(``<patient key>~<study hash>``) are dealt together, into one fold and one of train / val. Layout::

    {"version": 1, "seed", "n_folds", "val_fraction", "stratified_by": "report label" (or a named stratum),
     "default_fold": 0,
     "patients": {key: {"label", "fold"}}, "folds": [{"train": [...], "val": [...], "test": [...]}, ...]}

The file is never re-split silently: a manifest whose patients differ from the file's is an error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lgeclip.io.cohort import SliceRecord, patient_of, read_manifest
from lgeclip.utils import atomic_write_json

SPLITS_FILE = "splits.json"
SPLITS_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_N_FOLDS, DEFAULT_SEED, DEFAULT_VAL_FRACTION = 5, 0, 0.125
_RANK = {"positive": 2, "negative": 1, "unknown": 0}


def _by_patient(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Case labels -> (patient -> label (positive over negative over unknown), patient -> its case keys): the
    studies of one patient (``io.cohort.patient_of``) are dealt together."""
    group_label: dict[str, str] = {}
    cases: dict[str, list[str]] = {}
    for k, lab in labels.items():
        g = patient_of(k)
        cases.setdefault(g, []).append(k)
        if _RANK.get(lab, 0) >= _RANK.get(group_label.get(g, "unknown"), 0):
            group_label[g] = lab
    return group_label, cases


def _deal(labels: dict[str, str], folds: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    group_label, cases = _by_patient(labels)
    out: dict[str, int] = {}
    i = 0
    for lab in sorted(set(group_label.values())):
        keys = sorted(k for k, v in group_label.items() if v == lab)
        rng.shuffle(keys)
        for k in keys:
            for case in cases[k]:
                out[case] = i % folds
            i += 1
    return out


def assign_folds(labels: dict[str, str], folds: int, seed: int = 0) -> dict[str, int]:
    """patient_key -> fold in [0, folds), stratified by label: each label's patients are dealt round-robin after
    a seeded shuffle, continuing the deal across labels so that fold sizes differ by at most one."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"{len(labels)} patients cannot fill {folds} folds")
    return _deal(labels, folds, seed)


def fold_splits(labels: dict[str, str], fold_of: dict[str, int], fold: int, val_fraction: float = 0.15,
                seed: int = 0) -> dict[str, str]:
    """patient_key -> train / val / test for one fold: the fold is test; per label, round(val_fraction * n) (at
    least one when that label has >= 2 training patients and val_fraction > 0) of the rest are val."""
    rng = np.random.default_rng(seed + 1000 * (fold + 1))
    out = {k: "test" for k, f in fold_of.items() if f == fold}
    group_label, cases = _by_patient(labels)
    for lab in sorted(set(group_label.values())):
        keys = sorted(k for k, v in group_label.items() if v == lab and fold_of[cases[k][0]] != fold)
        rng.shuffle(keys)
        n_val = int(round(val_fraction * len(keys)))
        if val_fraction > 0 and len(keys) >= 2:
            n_val = min(max(n_val, 1), len(keys) - 1)
        for i, k in enumerate(keys):
            for case in cases[k]:
                out[case] = "val" if i < n_val else "train"
    return out


def make_splits(labels: dict[str, str], n_folds: int = DEFAULT_N_FOLDS, seed: int = DEFAULT_SEED,
                val_fraction: float = DEFAULT_VAL_FRACTION, stratified_by: str = "report label") -> dict:
    """The ``splits.json`` content for patients ``labels`` (patient_key -> stratum: the report label, or what
    ``stratified_by`` names, e.g. a cohort's diagnostic group).

    A cohort with fewer patients than folds is allowed (the last folds then test nobody)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    fold_of = _deal(labels, n_folds, seed)
    folds = []
    for f in range(n_folds):
        s = fold_splits(labels, fold_of, f, val_fraction, seed)
        folds.append({name: sorted(k for k, v in s.items() if v == name) for name in SPLIT_NAMES})
    return {"version": SPLITS_VERSION, "seed": int(seed), "n_folds": int(n_folds), "val_fraction": float(val_fraction),
            "stratified_by": stratified_by, "default_fold": 0,
            "patients": {k: {"label": labels[k], "fold": int(fold_of[k])} for k in sorted(labels)}, "folds": folds}


def patient_labels(records: list[SliceRecord]) -> dict[str, str]:
    """patient_key -> report label of a manifest (positive over negative over unknown if slices disagree)."""
    out: dict[str, str] = {}
    for r in records:
        if _RANK[r.label] >= _RANK[out.get(r.patient_key, "unknown")]:
            out[r.patient_key] = r.label
    return out


def splits_path(cohort_dir: str | Path) -> Path:
    return Path(cohort_dir) / SPLITS_FILE


def read_splits(cohort_dir: str | Path) -> dict:
    """The cohort's ``splits.json`` (FileNotFoundError when it has none; see :func:`ensure_splits`)."""
    path = splits_path(cohort_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{cohort_dir}: no {SPLITS_FILE} (ensure_splits / `lgeclip ingest` writes it)")
    data = json.loads(path.read_text())
    if data.get("version") != SPLITS_VERSION or len(data.get("folds", [])) != data.get("n_folds"):
        raise ValueError(f"{path}: not a version-{SPLITS_VERSION} splits file with n_folds folds")
    return data


def ensure_splits(cohort_dir: str | Path, n_folds: int | None = None, seed: int | None = None,
                  val_fraction: float | None = None) -> dict:
    """Read ``COHORT/splits.json``, or create it from the manifest (defaults: 5 folds, seed 0, val 0.125).

    The file's patients must be the manifest's, and an argument given explicitly must match the file;
    otherwise a ValueError says to delete the file to re-split (which changes every stage's split)."""
    cohort_dir = Path(cohort_dir)
    labels = patient_labels(read_manifest(cohort_dir))
    path = splits_path(cohort_dir)
    if not path.is_file():
        data = make_splits(labels, DEFAULT_N_FOLDS if n_folds is None else n_folds,
                           DEFAULT_SEED if seed is None else seed,
                           DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction)
        atomic_write_json(path, data)
        return data
    data = read_splits(cohort_dir)
    hint = (f"delete {path} to re-split (then retrain the anatomy nets and rebuild the caches of this cohort: "
            f"their splits change)")
    have = set(data["patients"])
    missing, extra = set(labels) - have, have - set(labels)
    if missing or extra:
        raise ValueError(f"{cohort_dir}: {SPLITS_FILE} does not match manifest.csv: {len(missing)} manifest "
                         f"patient(s) missing from it, {len(extra)} patient(s) in it not in the manifest; {hint}")
    for name, want in (("n_folds", n_folds), ("seed", seed), ("val_fraction", val_fraction)):
        if want is not None and data[name] != want:
            raise ValueError(f"{cohort_dir}: {SPLITS_FILE} has {name}={data[name]}, asked for {want}; {hint}")
    return data


def patient_split(cohort_dir: str | Path, fold: int = 0) -> dict[str, str]:
    """patient_key -> "train" | "val" | "test" for ``fold`` of the cohort's splits (created if missing)."""
    data = ensure_splits(cohort_dir)
    if not 0 <= fold < data["n_folds"]:
        raise ValueError(f"{cohort_dir}: fold {fold} is not in [0, {data['n_folds']}) of its {SPLITS_FILE}")
    return {k: name for name in SPLIT_NAMES for k in data["folds"][fold][name]}


def splits_digest(cohort_dir: str | Path) -> str:
    """First 16 hex digits of the sha256 of the cohort's ``splits.json`` bytes (created if missing)."""
    path = splits_path(cohort_dir)
    if not path.is_file():
        ensure_splits(cohort_dir)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
