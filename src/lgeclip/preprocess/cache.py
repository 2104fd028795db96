"""The preprocessed cache: every manifest slice run through the chain once, with the patient-level split.

Layout of ``CACHE``: ``slices/<slice_id>.npz`` (both variants, see ``PreprocessedSlice.to_arrays``),
``index.csv`` (``INDEX_COLUMNS``; ``split`` is fold ``cfg.fold`` of the cohort's ``splits.json``, the split the
anatomy nets use too), ``excluded.csv`` (slice_id, reason), ``preprocess.yaml`` (resolved ``PreprocessCfg``) and
``cache.json`` (counts, seconds per slice, settings, the ``seg_run`` / ``landmarks_run`` the anatomy came from,
``splits``: the splits file, its digest and the fold).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lgeclip.anatomy.types import AnatomyResult, OracleAnatomy
from lgeclip.config import load_config, save_config, to_dict
from lgeclip.io.cohort import SliceRecord, load_slice, read_manifest
from lgeclip.io.splits import patient_split, splits_digest, splits_path
from lgeclip.preprocess.chain import ImplausibleSlice, preprocess_slice, stack_consistent
from lgeclip.preprocess.config import PreprocessCfg
from lgeclip.utils import atomic_write_json, atomic_write_text, csv_text

INDEX_COLUMNS = ("slice_id", "patient_key", "level", "slice_index", "split", "label", "sentences", "scar_truth",
                 "source", "path", "scar_pattern")
_META_KEYS = ("props", "pixel_mm", "level")


@dataclass
class CacheRecord:
    """One ``index.csv`` row; ``path`` is the absolute path of the slice npz."""

    slice_id: str
    patient_key: str
    level: str
    slice_index: int
    split: str
    label: str
    path: Path
    sentences: list[str] = field(default_factory=list)
    scar_truth: int | None = None
    source: str = "dicom"
    scar_pattern: str = ""  # the truth's scar pattern of the patient where known (io.cohort.SliceRecord)

    def to_row(self, root: Path) -> dict[str, str]:
        rel = Path(self.path)
        try:
            rel = rel.relative_to(root)
        except ValueError:
            pass
        return {"slice_id": self.slice_id, "patient_key": self.patient_key, "level": self.level,
                "slice_index": str(self.slice_index), "split": self.split, "label": self.label,
                "sentences": json.dumps(self.sentences, ensure_ascii=False),
                "scar_truth": "" if self.scar_truth is None else str(int(self.scar_truth)), "source": self.source,
                "path": rel.as_posix(), "scar_pattern": self.scar_pattern}


def read_cache(cache: str | Path) -> list[CacheRecord]:
    """Records of ``CACHE/index.csv`` (paths resolved against the cache folder)."""
    root = Path(cache)
    path = root / "index.csv"
    if not path.exists():
        raise FileNotFoundError(f"{root}: no index.csv (run `lgeclip preprocess` / build_cache first)")
    out = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            st = r.get("scar_truth", "")
            out.append(CacheRecord(
                slice_id=r["slice_id"], patient_key=r["patient_key"], level=r["level"],
                slice_index=int(r["slice_index"]), split=r["split"], label=r["label"], path=root / r["path"],
                sentences=list(json.loads(r["sentences"] or "[]")), scar_truth=None if st in ("", None) else int(st),
                source=r.get("source", "dicom"), scar_pattern=r.get("scar_pattern") or ""))
    return out


def load_cached_slice(path: str | Path, oriented: bool = True) -> dict:
    """Arrays of one cached slice, keys without the ``native_`` prefix (the variant chosen by ``oriented``),
    plus ``pixel_mm`` (float), ``level`` (str) and ``props`` (dict)."""
    with np.load(path, allow_pickle=False) as z:
        files = z.files
        out: dict = {}
        for k in files:
            if k in _META_KEYS:
                continue
            is_native = k.startswith("native_")
            if is_native != (not oriented):
                continue
            out[k[len("native_"):] if is_native else k] = z[k]
        out["pixel_mm"] = float(z["pixel_mm"])
        out["level"] = str(z["level"])
        out["props"] = json.loads(bytes(z["props"]).decode("utf-8"))
    return out


def _save_npz(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _resolve_cfg(config: str | Path | PreprocessCfg | None, overrides: list[str] | None) -> PreprocessCfg:
    if isinstance(config, PreprocessCfg):
        if overrides:
            from lgeclip.config import apply_overrides, from_dict

            return from_dict(PreprocessCfg, apply_overrides(to_dict(config), overrides))
        return config
    return load_config(PreprocessCfg, config, overrides)


def _anatomy_batch(predictor, items: list[tuple[SliceRecord, dict]]) -> list[AnatomyResult | str]:
    """Anatomy per item (or the reason it failed), batched when the predictor offers
    ``predict_batch(items=[(image, spacing_mm), ...], names=[...], errors="return")`` (a failing slice comes back
    as its exception, or None); a batch that raises instead is redone one by one."""
    pairs = [(a["image"], tuple(float(x) for x in np.broadcast_to(a["spacing_mm"], (2,)))) for _, a in items]
    if hasattr(predictor, "predict_batch") and len(items) > 1:
        try:
            res = predictor.predict_batch(pairs, names=[r.slice_id for r, _ in items], errors="return")
            return [r if isinstance(r, AnatomyResult) else
                    f"anatomy prediction failed: {r if r is not None else 'no LV found'}" for r in res]
        except ValueError:
            pass  # one slice failed: fall back to one by one to find it
    out: list[AnatomyResult | str] = []
    for img, sp in pairs:
        try:
            out.append(predictor.predict(img, sp))
        except ValueError as e:
            out.append(f"anatomy prediction failed: {e}")
    return out


def _patient_chunks(records: list[SliceRecord], size: int) -> list[list[SliceRecord]]:
    """Records grouped by patient (first-appearance order), in chunks of about ``size`` that split no patient."""
    by: dict[str, list[SliceRecord]] = {}
    for r in records:
        by.setdefault(r.patient_key, []).append(r)
    chunks: list[list[SliceRecord]] = [[]]
    for recs in by.values():
        if chunks[-1] and len(chunks[-1]) + len(recs) > size:
            chunks.append([])
        chunks[-1].extend(recs)
    return [c for c in chunks if c]


def _stack_pass(anatomies: list, items: list[tuple[SliceRecord, dict]], cfg: PreprocessCfg) -> int:
    """Stack-consistent RVIPs (``cfg.rvip_stack_max_dev_deg``) over the predicted slices of a chunk, in place;
    stacks as ``SliceRecord.stack`` names them."""
    idx = [i for i, a in enumerate(anatomies) if not isinstance(a, str)]
    if cfg.rvip_stack_max_dev_deg <= 0 or not idx:
        return 0
    recs = [items[i][0] for i in idx]
    new, n = stack_consistent([anatomies[i] for i in idx], [items[i][1]["spacing_mm"] for i in idx],
                              [r.stack[0] for r in recs],
                              [r.stack[1] for r in recs], cfg)
    for i, a in zip(idx, new, strict=True):
        anatomies[i] = a
    return n


def build_cache(cohort: str | Path, seg_run: str | Path | None, landmarks_run: str | Path | None, out: str | Path,
                config: str | Path | PreprocessCfg | None = None, overrides: list[str] | None = None,
                oracle: bool = False, predictor=None) -> dict:
    """Preprocess every manifest slice of ``cohort`` into ``out`` (see the module docstring); returns the summary.

    Anatomy comes from ``AnatomyPredictor.from_run_dirs(seg_run, landmarks_run)`` (or ``predictor``, one already
    built from those run folders with this recipe's ``seg_tta`` / ``anatomy_bf16``, e.g. one whose memo holds these
    slices), or from the truth in the slice npz with ``oracle=True`` (a slice without truth RVIPs is then excluded
    with the reason)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cfg = _resolve_cfg(config, overrides)
    cohort, out = Path(cohort), Path(out)
    records = read_manifest(cohort)
    split = patient_split(cohort, cfg.fold)  # the cohort's splits.json, the file the anatomy nets read too
    if oracle:
        predictor = None
    else:
        if seg_run is None or landmarks_run is None:
            raise ValueError("build_cache: seg_run and landmarks_run are required unless oracle=True")
        from lgeclip.anatomy.predictor import AnatomyPredictor

        if predictor is None:
            predictor = AnatomyPredictor.from_run_dirs(seg_run, landmarks_run, tta=cfg.seg_tta,
                                                       bf16=cfg.anatomy_bf16)
        elif (predictor.tta, predictor.bf16) != (cfg.seg_tta, cfg.anatomy_bf16):
            raise ValueError(f"build_cache: the given predictor runs tta={predictor.tta}, bf16={predictor.bf16}; "
                             f"the recipe asks seg_tta={cfg.seg_tta}, anatomy_bf16={cfg.anatomy_bf16}")
    (out / "slices").mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "preprocess.yaml")

    rows: list[CacheRecord] = []
    excluded: list[tuple[str, str]] = []
    fallback: list[tuple[str, str]] = []  # cached without orientation / AHA map (cfg.rvip_fallback)
    n_stack = 0  # slices whose RVIPs the stack-consistency pass changed
    t0 = time.perf_counter()
    cols = (TextColumn("preprocess"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, transient=True) as bar:
        task = bar.add_task("slices", total=len(records))
        for chunk in _patient_chunks(records, cfg.batch_size):  # a patient's stack is predicted together
            items: list[tuple[SliceRecord, dict]] = []
            for rec in chunk:
                path = cohort / rec.image_path
                if not path.exists():
                    excluded.append((rec.slice_id, f"slice file missing: {rec.image_path}"))
                    bar.advance(task)
                    continue
                items.append((rec, load_slice(path)))
            if oracle:
                anatomies: list[AnatomyResult | str] = []
                for rec, arrays in items:
                    try:
                        anatomies.append(OracleAnatomy.from_slice(arrays, rec.slice_id,
                                                                  allow_missing_rvip=cfg.rvip_fallback))
                    except ValueError as e:
                        anatomies.append(f"oracle anatomy unavailable: {e}")
            else:
                anatomies = _anatomy_batch(predictor, items) if items else []
                n_stack += _stack_pass(anatomies, items, cfg)
            for (rec, arrays), anat in zip(items, anatomies, strict=True):
                bar.advance(task)
                if isinstance(anat, str):
                    excluded.append((rec.slice_id, anat))
                    continue
                try:
                    pre = preprocess_slice(arrays["image"], arrays["spacing_mm"], anat, cfg,
                                           truth={k: arrays[k] for k in ("scar", "mvo") if k in arrays},
                                           level=rec.level)
                except ImplausibleSlice as e:
                    excluded.append((rec.slice_id, f"implausible: {e.reason}"))
                    continue
                if pre.props.get("rvip_problem"):
                    fallback.append((rec.slice_id, pre.props["rvip_problem"]))
                npz = out / "slices" / f"{rec.slice_id}.npz"
                _save_npz(npz, pre.to_arrays())
                rows.append(CacheRecord(
                    slice_id=rec.slice_id, patient_key=rec.patient_key, level=rec.level,
                    slice_index=rec.slice_index, split=split[rec.patient_key], label=rec.label, path=npz,
                    sentences=list(rec.sentences), scar_truth=rec.scar_truth, source=rec.source,
                    scar_pattern=rec.scar_pattern))
    seconds = time.perf_counter() - t0

    atomic_write_text(out / "index.csv", csv_text(INDEX_COLUMNS, [r.to_row(out) for r in rows]))
    atomic_write_text(out / "excluded.csv", csv_text(("slice_id", "reason"), excluded))
    if fallback:
        atomic_write_text(out / "rvip_fallback.csv", csv_text(("slice_id", "reason"), fallback))

    def count(attr: str) -> dict[str, int]:
        vals = [getattr(r, attr) for r in rows]
        return {v: vals.count(v) for v in sorted(set(vals))}

    summary = {
        "cohort": str(cohort.resolve()), "seg_run": None if seg_run is None else str(Path(seg_run).resolve()),
        "landmarks_run": None if landmarks_run is None else str(Path(landmarks_run).resolve()), "oracle": bool(oracle),
        "n_manifest": len(records), "n_cached": len(rows), "n_excluded": len(excluded),
        "n_rvip_fallback": len(fallback), "n_rvip_stack_changed": n_stack,
        "n_patients": len({r.patient_key for r in rows}), "split": count("split"), "label": count("label"),
        "level": count("level"), "seconds": round(seconds, 3),
        "seconds_per_slice": round(seconds / max(len(records), 1), 4), "size": cfg.size,
        "pixel_mm": cfg.out_pixel_mm, "settings": to_dict(cfg),
        "splits": {"file": str(splits_path(cohort).resolve()), "digest": splits_digest(cohort), "fold": cfg.fold},
    }
    atomic_write_json(out / "cache.json", summary)
    return summary
