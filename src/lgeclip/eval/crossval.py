"""`lgeclip crossval`: patient-level k-fold cross-validation of one recipe on one preprocessed cache.

The folds are the cohort's ``splits.json`` (``lgeclip.io.splits``; the cohort is the cache's ``cache.json``
``cohort``): fold k tests its patients, selects checkpoints on its ``val`` list and trains on the rest, the same
folds the anatomy nets (``data.fold``) and caches (``fold``) use. Anatomy, per ``anatomy``:

- ``"shared"``: every fold is a *view* of the source cache written to disk (``OUT/folds/foldK/cache/``: an
  ``index.csv`` with the fold's split column whose paths point at the source cache's slices, plus the source
  ``cache.json``), preprocessed by the cache's anatomy nets. Every fold is leak-checked before anything trains:
  nets that trained on one fold's test patients (e.g. on fold 0 of this cohort) stop the run.
- ``"per_fold"``: for fold k a segmentation net (the cohort + ``anatomy_cohorts``, ``data.fold=k``) and an RVIP
  net (the cohorts with RVIP truth; none: the cache's landmarks run) train into ``OUT/anatomy/foldK/``, and the
  cohort is preprocessed with them (``fold=k``) into ``OUT/folds/foldK/cache/``.

Outputs: ``OUT/runs/foldK/`` (run folders, evaluated on their test fold in ``eval_test/``),
``OUT/oof_patients.csv`` (every patient's out-of-fold P(LGE) and call), ``OUT/crossval.json`` (pooled
out-of-fold metrics with a patient-bootstrap 95 % interval, per-fold mean ± sd, and per fold the upstream runs
and leak check). Resumable: every stage whose output marker exists is skipped.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from lgeclip.eval.ablate import mean_sd
from lgeclip.eval.leaks import LeakError, check_no_leak
from lgeclip.io.cohort import load_slice, read_manifest
from lgeclip.io.splits import assign_folds, ensure_splits, fold_splits, patient_split, splits_digest, splits_path
from lgeclip.preprocess.cache import CacheRecord, read_cache
from lgeclip.utils import atomic_write_json, atomic_write_text, csv_text, get_logger

__all__ = ["assign_folds", "crossval", "fold_splits", "patient_labels", "pooled_metrics", "write_fold_cache"]
ANATOMY_MODES = ("shared", "per_fold")

FOLD_METRICS = ("balanced_accuracy", "auroc", "sensitivity", "specificity", "slice_balanced_accuracy", "slice_auroc")


def patient_labels(records: list[CacheRecord]) -> dict[str, str]:
    """patient_key -> report label (the same on every slice of a patient)."""
    out: dict[str, str] = {}
    for r in records:
        out.setdefault(r.patient_key, r.label)
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
    if "fold" in info and meta.get("splits"):
        meta["splits"] = {**meta["splits"], "fold": info["fold"]}  # the view's split is that fold of splits.json
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


def has_rvip_truth(cohort: Path) -> bool:
    """Whether any slice of ``cohort`` with truth masks has both RV insertion points."""
    for rec in read_manifest(cohort):
        if rec.has_masks:
            rvip = load_slice(Path(cohort) / rec.image_path).get("rvip")
            if rvip is not None and np.all(np.isfinite(rvip)):
                return True
    return False


def _per_fold_cache(k: int, cohort: Path, cache: Path, out: Path, opts: dict, log) -> Path:
    """Fold k's anatomy nets (trained unless their markers exist) and its cache preprocessed with them."""
    from lgeclip.preprocess.cache import build_cache
    from lgeclip.train.anatomy import train_landmarks, train_segmentation

    adir, fold_cache = out / "anatomy" / f"fold{k}", out / "folds" / f"fold{k}" / "cache"
    seg, lm = adir / "seg", adir / "landmarks"
    cohorts = [cohort, *opts["anatomy_cohorts"]]
    if not (seg / "encoder.safetensors").exists():
        log.info(f"fold {k}: training the segmentation net on {[str(c) for c in cohorts]}")
        train_segmentation(cohorts, seg, config=opts["seg_recipe"], overrides=[*opts["seg_overrides"],
                           f"data.fold={k}"], resume=(seg / "checkpoints" / "last").exists())
    with_rvip = [c for c in cohorts if has_rvip_truth(c)]
    if with_rvip:
        if not (lm / "split.json").exists():
            log.info(f"fold {k}: training the RVIP net on {[str(c) for c in with_rvip]}")
            train_landmarks(with_rvip, lm, config=opts["landmarks_recipe"], overrides=[*opts["landmarks_overrides"],
                            f"data.fold={k}"], resume=(lm / "checkpoints" / "last").exists())
    else:
        lm = json.loads((cache / "cache.json").read_text()).get("landmarks_run")
        if not lm:
            raise ValueError(f"crossval per_fold: no cohort of {[str(c) for c in cohorts]} has RVIP truth and "
                             f"{cache} records no landmarks_run to reuse; add a cohort with RVIPs (e.g. a phantom) "
                             f"to anatomy_cohorts")
        log.info(f"fold {k}: no cohort has RVIP truth; reusing the cache's RVIP net {lm}")
    if not (fold_cache / "cache.json").exists():
        config = opts["preprocess_config"]
        if config is None and (cache / "preprocess.yaml").exists():
            config = cache / "preprocess.yaml"  # the source cache's settings
        log.info(f"fold {k}: preprocessing {cohort} with the fold's anatomy nets")
        build_cache(cohort, seg, lm, fold_cache, config=config, overrides=[f"fold={k}"])
    return fold_cache


def _vision_init(run: Path) -> dict | None:
    """The vision encoder initialisation recorded in a run's config.yaml."""
    import yaml

    path = run / "config.yaml"
    if not path.is_file():
        return None
    task = (yaml.safe_load(path.read_text()) or {}).get("task") or {}
    sec = task.get("model" if task.get("task", "clip") == "clip" else "classifier") or {}
    return {"vision_init": sec.get("vision_init"), "vision_init_path": sec.get("vision_init_path")}


def _check_plan(out: Path, plan: dict) -> None:
    path = out / "crossval_plan.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in plan if old.get(k) != plan[k])
        if diff:
            was = {k: old.get(k) for k in diff}
            raise ValueError(f"{out} holds a cross-validation with other {diff} (was {was}); use another output folder")
    atomic_write_json(path, plan)


def crossval(cache: str | Path, out: str | Path, recipe: str = "cpu", folds: int | None = None, seed: int = 0,
             val_fraction: float | None = None, overrides: list[str] | None = None, anatomy: str = "shared",
             seg_recipe: str | Path | None = None, landmarks_recipe: str | Path | None = None,
             anatomy_cohorts: list[Path] | None = None, seg_overrides: list[str] | None = None,
             landmarks_overrides: list[str] | None = None, preprocess_config: str | Path | None = None) -> dict:
    """Train and evaluate ``recipe`` on every fold of the cache's cohort ``splits.json``; writes and returns the
    pooled summary (see the module doc for ``anatomy``).

    ``folds`` / ``val_fraction`` must match the splits file when given (they size it when the cohort has none; so
    does ``seed``, which otherwise only seeds training)."""
    from lgeclip.eval.evaluate import evaluate_run
    from lgeclip.train.clip import train_clip

    if anatomy not in ANATOMY_MODES:
        raise ValueError(f"anatomy must be one of {ANATOMY_MODES}, got {anatomy!r}")
    if any(o.replace(" ", "").startswith("loop.seed=") for o in overrides or []):
        # crossval sets loop.seed from `seed` for every fold: a `--set loop.seed=` would be silently overruled
        raise ValueError("crossval: give the training seed as seed (--seed N), not as a loop.seed override")
    cache, out = Path(cache), Path(out)
    log = get_logger(log_file=out / "crossval.log")
    cohort = json.loads((cache / "cache.json").read_text()).get("cohort")
    if not cohort or not (Path(cohort) / "manifest.csv").is_file():
        raise FileNotFoundError(f"{cache}: cache.json names no cohort folder with a manifest ({cohort}); the folds "
                                f"come from that cohort's splits.json")
    cohort = Path(cohort)
    splits = ensure_splits(cohort, folds, None if splits_path(cohort).is_file() else seed, val_fraction)
    n_folds, digest = splits["n_folds"], splits_digest(cohort)
    empty = [k for k, f in enumerate(splits["folds"]) if not f["test"]]
    if empty:
        raise ValueError(f"{splits_path(cohort)}: fold(s) {empty} test no patient ({len(splits['patients'])} "
                         f"patients for {n_folds} folds)")
    _check_plan(out, {"cohort": str(cohort.resolve()), "splits_digest": digest, "anatomy": anatomy})
    opts = {"seg_recipe": seg_recipe, "landmarks_recipe": landmarks_recipe,
            "anatomy_cohorts": [Path(c) for c in anatomy_cohorts or []], "seg_overrides": list(seg_overrides or []),
            "landmarks_overrides": list(landmarks_overrides or []), "preprocess_config": preprocess_config}
    info = {"folds": n_folds, "splits_file": str(splits_path(cohort).resolve()), "splits_digest": digest}

    def leak_checked(k: int, fold_cache: Path) -> dict:
        try:
            return check_no_leak(None, fold_cache, "test")
        except LeakError as e:
            fix = ("use anatomy='per_fold' (`--anatomy per_fold`) or a cache built with anatomy nets trained on "
                   "other cohorts only" if anatomy == "shared" else "the fold's anatomy nets must not see its test")
            raise LeakError(f"crossval fold {k} (anatomy={anatomy!r}): {e} -> {fix}") from e

    fold_caches: dict[int, Path] = {}
    if anatomy == "shared":  # every fold checked before anything trains
        for k in range(n_folds):
            fold_caches[k] = out / "folds" / f"fold{k}" / "cache"
            if not (fold_caches[k] / "index.csv").exists():
                write_fold_cache(cache, fold_caches[k], patient_split(cohort, k), {**info, "fold": k})
            leak_checked(k, fold_caches[k])
    per_fold, oof = [], []
    threshold = 0.5
    for k in range(n_folds):
        run = out / "runs" / f"fold{k}"
        summary_path = run / "eval_test" / "summary.json"
        if anatomy == "per_fold":
            fold_caches[k] = _per_fold_cache(k, cohort, cache, out, opts, log)
        fold_cache = fold_caches[k]
        if summary_path.exists():
            log.info(f"fold {k}: done, reusing {summary_path}")
        else:
            leak_checked(k, fold_cache)
            ov = [*(overrides or []), f"loop.seed={seed}"]
            log.info(f"fold {k}/{n_folds}: training {recipe} ({' '.join(ov)})")
            train_clip(recipe, fold_cache, run, overrides=ov, resume=(run / "checkpoints" / "last").exists())
            evaluate_run(run, fold_cache, split="test", out=run / "eval_test")
        s = json.loads(summary_path.read_text())
        threshold = s.get("threshold", threshold)
        meta = json.loads((fold_cache / "cache.json").read_text())
        up = {"seg_run": meta.get("seg_run"), "landmarks_run": meta.get("landmarks_run"),
              "vision_init": _vision_init(run), "leak_check": s.get("leak_check")}
        per_fold.append({"fold": k, "n_patients": s.get("n_patients"), **{m: s.get(m) for m in FOLD_METRICS},
                         "upstream": up})
        oof += [{**r, "fold": k} for r in _read_patients(run / "eval_test" / "patients.csv")]
    summary = {"cache": str(cache.resolve()), "cohort": str(cohort.resolve()), "recipe": recipe,
               "overrides": overrides or [], "anatomy": anatomy, "folds": n_folds, "seed": seed,
               "val_fraction": splits["val_fraction"],
               "splits": {"file": info["splits_file"], "digest": digest, "seed": splits["seed"]},
               "threshold": threshold, "pooled": pooled_metrics(oof, threshold), "per_fold": per_fold,
               "fold_mean_sd": {m: dict(zip(("mean", "sd"), mean_sd(
                   [f[m] for f in per_fold if f[m] is not None]), strict=True)) for m in FOLD_METRICS}}
    if anatomy == "per_fold":
        summary["anatomy_settings"] = {k: ([str(x) for x in v] if isinstance(v, list) else
                                           (None if v is None else str(v))) for k, v in opts.items()}
    atomic_write_text(out / "oof_patients.csv", csv_text(
        ("patient_key", "label", "p_lge", "call", "n_slices", "fold"),
        [(r["patient_key"], r["label"], r["p_lge"], r["call"], r["n_slices"], r["fold"]) for r in oof]))
    atomic_write_json(out / "crossval.json", summary)
    log.info(f"wrote {out / 'crossval.json'}")
    return summary
