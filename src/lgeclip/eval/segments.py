"""``lgeclip evaluate --segments``: where the scar is, scored against truth masks on held-out patients.

Each cached slice of the split is asked the regional questions of ``infer.segments`` (per AHA segment of its level
and per wall third, by editing the image or by the training-free bright floor) or of ``infer.multilabel`` (in
words: which wall, how deep, which pattern).
A region is truth-positive when the truth scar within ``TRUTH_BAND_MM`` of its wall (each pixel given the region of
its nearest predicted wall pixel) covers at least ``min_fraction`` of its wall pixels (and ``min_pixels``), on the
model's grid: the same positives whatever band the method used. Reported: AUROC over all (slice, segment) pairs, the
mean of the 16 per-segment AUROCs, the same within truth-positive slices only (where in the slice, once it is
known to hold scar), the study-level 16-segment table against "any slice of that level", depth AUROC per wall
third, and the pattern (ischaemic vs non-ischaemic, ``infer.multilabel.ischaemic_score``) on the truth-scar slices of
patients whose truth names the pattern (``scar_pattern``; AUROC where both kinds occur, and the share called right
at 0.5, the only measure where all are of one kind, e.g. EMIDEC's infarcts). Slices without a segment map (RVIP
fallback) are counted, not scored for segments or depth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lgeclip.data.clip import model_image, model_labels
from lgeclip.eval.evaluate import leak_check
from lgeclip.infer.multilabel import ischaemic_score
from lgeclip.infer.segments import BAND_MM, DEFAULT_METHOD, DEPTHS, RegionMaps, study_segments
from lgeclip.infer.zeroshot import Predictor
from lgeclip.metrics import auroc
from lgeclip.preprocess.cache import load_cached_slice
from lgeclip.train.scoring import split_records
from lgeclip.utils import atomic_write_json, atomic_write_text, csv_text

# truth regions reach this far (mm) beyond the predicted myocardium: scar the segmentation gave to the cavity still
# counts for the segment of its nearest wall pixel, for every method and band alike
TRUTH_BAND_MM = 5.0


def region_truth(scar: np.ndarray, mask: np.ndarray, min_fraction: float = 0.05, min_pixels: int = 3,
                 area: int | None = None) -> bool:
    """True when the scar in the region covers at least ``min_fraction`` of ``area`` (default: the region's size)
    and ``min_pixels`` pixels."""
    n = int((np.asarray(scar) > 0)[mask].sum())
    return n >= max(min_pixels, min_fraction * (int(mask.sum()) if area is None else area))


def _auc(pairs: list[tuple[bool, float]]) -> float | None:
    if not pairs:
        return None
    v = auroc(np.array([t for t, _ in pairs]), np.array([p for _, p in pairs]))
    return None if np.isnan(v) else round(float(v), 4)


def evaluate_segments(run: str | Path, cache: str | Path, split: str = "test", out: str | Path | None = None,
                      method: str = DEFAULT_METHOD, device: str | None = None, allow_leak: bool = False,
                      min_fraction: float = 0.05, min_pixels: int = 3, band_mm: float = BAND_MM,
                      truth_band_mm: float = TRUTH_BAND_MM) -> dict:
    """Segment and depth localisation of run folder ``run`` on the ``split`` patients of ``cache`` (leak-checked);
    writes ``segments.csv`` and ``segments_summary.json`` to ``out`` (default ``<run>/eval_segments_<split>``)."""
    run, cache = Path(run), Path(cache)
    leaks = leak_check(run, cache, split, allow_leak)
    out = Path(out) if out is not None else run / f"eval_segments_{split}"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pred = Predictor.from_run_dir(run, device=device, with_anatomy=False)
    cfg = pred.cfg
    records = split_records(cache, [split])
    if not records:
        raise ValueError(f"{cache}: no slices in split {split!r}")
    t0 = time.perf_counter()
    maps, truths, scars = [], [], []
    for r in records:
        d = load_cached_slice(r.path, oriented=cfg.data.orientation)
        size = cfg.data.image_size
        px = float(d["pixel_mm"]) * d["image"].shape[0] / size  # mm per model pixel
        maps.append(RegionMaps(model_image(d["image"], size), model_labels(d["myocardium"], size),
                               model_labels(d["aha"], size), model_labels(d["layers"], size), r.level,
                               band_px=band_mm / px))
        truths.append(RegionMaps(maps[-1].image, maps[-1].myocardium, maps[-1].aha, maps[-1].layers, r.level,
                                 band_px=truth_band_mm / px))
        scars.append(model_labels(d["scar"], size) if "scar" in d else None)
    p_slice = pred.score_images(np.stack([m.image for m in maps]), [m.level for m in maps])
    regional = pred.localise_maps(maps, p_slice, method=method)
    seconds = time.perf_counter() - t0

    rows, seg_pairs, pos_pairs, depth_pairs = [], [], [], {name: [] for name in DEPTHS.values()}
    per_seg: dict[int, list] = {s: [] for s in range(1, 17)}
    studies: dict[str, dict] = {}
    n_no_map = 0
    pattern_pairs: list[tuple[bool, float]] = []
    for r, m, tm, scar, reg, ps in zip(records, maps, truths, scars, regional, p_slice, strict=True):
        q_isch = ischaemic_score(reg)
        if q_isch is not None:
            known = bool(r.scar_truth and r.scar_pattern)
            rows.append((r.slice_id, r.patient_key, r.level, "pattern", "ischaemic", f"{q_isch:.6f}",
                         int(r.scar_pattern == "ischaemic") if known else "", f"{ps:.6f}"))
            if known:
                pattern_pairs.append((r.scar_pattern == "ischaemic", q_isch))
        if reg["reason"]:
            n_no_map += 1
            continue
        st = studies.setdefault(r.patient_key, {"levels": [], "regional": [], "truth": set()})
        st["levels"].append(r.level)
        st["regional"].append(reg)
        # truth on the truth band, whatever band the method used (so that bands compare on the same positives);
        # the fraction is of the region's own wall (band 0)
        regions = {(kind, rid): mask for kind, rid, mask in tm.regions()}
        own = {(kind, rid): int(mask.sum()) for kind, rid, mask in
               RegionMaps(m.image, m.myocardium, m.aha, m.layers, m.level).regions(min_pixels=1)}
        slice_pos = scar is not None and bool((scar > 0)[tm.wall[0]].any())
        for (kind, rid), mask in regions.items():
            p = reg["segments"].get(rid, 0.0) if kind == "segment" else reg["depth"].get(DEPTHS[rid], 0.0)
            t = None if scar is None else region_truth(scar, mask, min_fraction, min_pixels,
                                                       area=own.get((kind, rid), int(mask.sum())))
            rows.append((r.slice_id, r.patient_key, r.level, kind, rid if kind == "segment" else DEPTHS[rid],
                         f"{p:.6f}", "" if t is None else int(t), f"{ps:.6f}"))
            if t is None:
                continue
            if kind == "segment":
                seg_pairs.append((t, p))
                per_seg[rid].append((t, p))
                if slice_pos:
                    pos_pairs.append((t, p))
                if t:
                    st["truth"].add(rid)
            else:
                depth_pairs[DEPTHS[rid]].append((t, p))
    study_pairs = []
    for st in studies.values():
        for row in study_segments(st["levels"], st["regional"]):
            if row["score"] is not None:
                study_pairs.append((row["segment"] in st["truth"], row["score"]))
    per_seg_auc = {s: _auc(v) for s, v in per_seg.items()}
    defined = [v for v in per_seg_auc.values() if v is not None]
    summary = {
        "run": str(run.resolve()), "recipe": cfg.name, "task": cfg.task, "cache": str(cache.resolve()),
        "split": split, "method": method, "band_mm": band_mm,
        "truth_rule": f"scar within {truth_band_mm:g} mm of the region's wall >= {min_fraction:.0%} of the wall and "
                      f">= {min_pixels} px (model grid)", "truth_band_mm": truth_band_mm,
        "n_slices": len(records), "n_slices_without_segment_map": n_no_map,
        "n_segment_pairs": len(seg_pairs), "n_segment_pairs_positive": int(sum(t for t, _ in seg_pairs)),
        "segment_auroc": _auc(seg_pairs),
        "segment_auroc_mean_over_segments": round(float(np.mean(defined)), 4) if defined else None,
        "segment_auroc_per_segment": per_seg_auc,
        "segment_auroc_within_scar_slices": _auc(pos_pairs),
        "study_segment_auroc": _auc(study_pairs), "n_study_segment_pairs": len(study_pairs),
        "depth_auroc": {k: _auc(v) for k, v in depth_pairs.items()},
        "depth_auroc_pooled": _auc([x for v in depth_pairs.values() for x in v]),
        "pattern_source": f"asked in words ({method})" if any((g.get("answers") or {}).get("pattern")
                                                              for g in regional)
        else "endocardial share of the depth scores",
        "n_pattern_slices": {"ischaemic": sum(t for t, _ in pattern_pairs),
                             "non_ischaemic": sum(not t for t, _ in pattern_pairs)},
        "pattern_auroc": _auc(pattern_pairs),
        "pattern_accuracy_at_half": round(float(np.mean([(q > 0.5) == t for t, q in pattern_pairs])), 4)
        if pattern_pairs else None,
        "seconds": round(seconds, 2), "leak_check": leaks,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "segments.csv", csv_text(
        ("slice_id", "patient_key", "level", "kind", "region", "p", "truth", "p_slice"), rows))
    atomic_write_json(out / "segments_summary.json", summary)
    return summary
