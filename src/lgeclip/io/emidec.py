"""EMIDEC PNG layout -> cohort folder with label-derived reports and truth masks (``source="emidec"``).

Layout: any folder ``X/`` with a sibling ``Xannot/`` holding ``Case_<P|N><nnn>_slice<kkk>.png`` (8-bit image) and a
same-named label map (0 background, 1 LV cavity, 2 normal myocardium, 3 infarct, 4 MVO); all folders form one pool.

Slice order: the PNG slice number does not say which end is the base. The LV (cavity + myocardium) area shrinks
towards the apex, so each case votes with the sign of the area-vs-slice-number slope and the folder-wide majority
decides (in the shipped 70 cases slice000 is the APEX in 69; one case is flat). Manifest ``slice_index`` is
base-first (0 = base); levels are thirds of the stack.

Wall words assume the standard short-axis display (anterior up, septum on the image left / RV side, lateral
right, inferior down). The PNGs keep no orientation metadata, so this is an assumption, recorded in cohort.json.
"""

from __future__ import annotations

import csv
import io as _io
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lgeclip.io.cohort import SliceRecord, patient_key, save_slice, write_excluded, write_manifest
from lgeclip.io.dicom import level_of
from lgeclip.io.splits import ensure_splits, splits_path
from lgeclip.utils import atomic_write_json, atomic_write_text, stable_hash

NAME_RE = re.compile(r"^(Case_([PN])\d+)_slice(\d+)\.png$", re.IGNORECASE)
# basal / mid: six 60-degree walls from the image right, counter-clockwise (AHA 6-segment rings)
WALLS6 = ("anterolateral", "anterior", "anteroseptal", "inferoseptal", "inferior", "inferolateral")
WALL_ORDER = ("anterior", "anteroseptal", "septal", "inferoseptal", "inferior", "inferolateral", "lateral",
              "anterolateral")
EXTENT_WORDS = {
    "subendocardial": ["subendocardial", "subendocardial (<25% of wall thickness)"],
    "<50%": ["non-transmural (<50% of wall thickness)", "partial-thickness (less than 50%)"],
    ">50%": ["more than 50% transmural", "predominantly transmural (>50%)"],
    "transmural": ["transmural", "full-thickness transmural"],
}


def find_cases(root: str | Path) -> dict[str, list[tuple[int, Path, Path]]]:
    """{case: [(slice number, image png, label png), ...]} sorted by slice number, over all X/ + Xannot/ pairs."""
    root = Path(root)
    cases: dict[str, list[tuple[int, Path, Path]]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith("annot")):
        ann = root / f"{d.name}annot"
        if not ann.is_dir():
            continue
        for img in sorted(d.glob("*.png")):
            m = NAME_RE.match(img.name)
            if m and (ann / img.name).exists():
                cases.setdefault(m.group(1), []).append((int(m.group(3)), img, ann / img.name))
    return {k: sorted(v) for k, v in sorted(cases.items())}


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def wall_angle(r: np.ndarray, c: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Display angle in degrees [0, 360): 0 = image right (lateral), 90 = up (anterior), 180 = left (septal)."""
    return np.degrees(np.arctan2(-(r - center[0]), c - center[1])) % 360


def wall_word(angle: float, level: str) -> str:
    """Wall name for a display angle (standard display assumed); the apex uses four walls."""
    if level == "apical":
        return ("lateral", "anterior", "septal", "inferior")[int(((angle + 45) % 360) // 90)]
    return WALLS6[int((angle % 360) // 60)]


# AHA segment -> wall word (basal 1-6, mid 7-12, apical 13-16); the same table as lgeclip.anatomy.frames
SEGMENT_WORDS = {**{s: w for i, w in enumerate(WALLS6[1:] + WALLS6[:1]) for s in (i + 1, i + 7)},
                 13: "anterior", 14: "septal", 15: "inferior", 16: "lateral"}


def segment_walls(scar: np.ndarray, segments: np.ndarray, min_fraction: float = 0.2) -> list[str]:
    """Wall words of the AHA segments (``segments``: (H, W) 1-16 on the myocardium) whose area is at least
    ``min_fraction`` scar (the most affected one when none reaches it), in ``WALL_ORDER``."""
    segs = [int(v) for v in np.unique(segments) if v > 0]
    frac = {v: float(scar[segments == v].mean()) for v in segs}
    hit = [v for v in segs if frac[v] >= min_fraction] or [max(segs, key=frac.get)] if segs else []
    return sorted({SEGMENT_WORDS[v] for v in hit}, key=WALL_ORDER.index)


def scar_geometry(lab: np.ndarray, level: str, n_sectors: int = 36, segments: np.ndarray | None = None) -> dict:
    """Polar sampling around the LV centroid: per angular sector the fraction of the wall occupied by scar.

    Wall words come from the AHA ``segments`` map when one is given (the anatomical frame, see
    ``lgeclip.anatomy.frames``), else from the display angle (standard display assumed).
    Returns {"extent": category, "max_fraction", "walls": [wall words], "mvo": bool} ("extent" None without scar)."""
    myo = np.isin(lab, (2, 3, 4))
    scar = np.isin(lab, (3, 4))
    if not scar.any():
        return {"extent": None, "max_fraction": 0.0, "walls": [], "mvo": False}
    pool = lab == 1
    rr, cc = np.nonzero(pool if pool.any() else myo)
    center = (float(rr.mean()), float(cc.mean()))
    r, c = np.nonzero(myo)
    ang = wall_angle(r, c, center)
    sec = (ang // (360 / n_sectors)).astype(int)
    is_scar = scar[r, c]
    wall_n = np.bincount(sec, minlength=n_sectors)
    scar_n = np.bincount(sec, weights=is_scar, minlength=n_sectors)
    frac = np.where(wall_n > 0, scar_n / np.maximum(wall_n, 1), 0.0)
    hit = frac >= 0.2
    if not hit.any():
        hit = frac > 0
    f = float(np.percentile(frac[hit], 75))
    # subendocardial: the scar hugs the cavity (touches the blood pool) and is thin
    touches_pool = bool((scar & _dilate(pool)).any()) if pool.any() else True
    if f >= 0.9:
        extent = "transmural"
    elif f > 0.5:
        extent = ">50%"
    elif f <= 0.25 and touches_pool:
        extent = "subendocardial"
    else:
        extent = "<50%"
    if segments is not None and (np.asarray(segments)[myo] > 0).any():
        walls = segment_walls(scar & myo, np.where(myo, segments, 0))
    else:
        mids = (np.nonzero(hit)[0] + 0.5) * (360 / n_sectors)
        walls = sorted({wall_word(a, level) for a in mids}, key=WALL_ORDER.index)
    return {"extent": extent, "max_fraction": round(f, 3), "walls": walls, "mvo": bool((lab == 4).any())}


def _dilate(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:] |= m[:-1]
    out[:-1] |= m[1:]
    out[:, 1:] |= m[:, :-1]
    out[:, :-1] |= m[:, 1:]
    return out


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def write_report(findings: dict[str, dict], rng: np.random.Generator) -> str:
    """Free-text report from per-level scar geometry ({level: scar_geometry}); no level with scar -> negative."""
    pos = {lv: g for lv, g in findings.items() if g["extent"] is not None}
    intro = rng.choice(["CLINICAL INDICATION: Assessment of myocardial viability.",
                        "INDICATION: Chest pain, query myocardial infarction.",
                        "HISTORY: Suspected coronary artery disease."])
    tech = "TECHNIQUE: Short-axis phase-sensitive inversion recovery images after gadolinium."
    if not pos:
        f = rng.choice(["No late gadolinium enhancement is seen.",
                        "There is no myocardial late gadolinium enhancement.",
                        "Late gadolinium enhancement imaging shows no LGE in any segment."])
        imp = rng.choice(["No myocardial scar or fibrosis.", "No LGE: no evidence of myocardial infarction."])
        return f"{intro}\n{tech}\nFINDINGS: {f}\nIMPRESSION: {imp}"
    order = {">50%": 2, "transmural": 3, "<50%": 1, "subendocardial": 0}
    sents = []
    for lv in ("basal", "mid", "apical"):
        g = pos.get(lv)
        if g is None:
            continue
        ext = str(rng.choice(EXTENT_WORDS[g["extent"]]))
        walls = _join(g["walls"]) + (" wall" if len(g["walls"]) == 1 else " walls")
        sents.append(str(rng.choice([
            f"There is {ext} late gadolinium enhancement of the {lv} {walls}.",
            f"{ext.capitalize()} LGE involves the {lv} {walls}.",
            f"Late enhancement of the {lv} {walls} is {ext}.",
        ])))
    if any(g["mvo"] for g in pos.values()):
        sents.append(str(rng.choice(["A dark core of microvascular obstruction is present within the infarct.",
                                     "Microvascular obstruction is seen."])))
    worst = max((g["extent"] for g in pos.values()), key=order.get)
    levels = _join([lv for lv in ("basal", "mid", "apical") if lv in pos])
    imp = str(rng.choice([f"Myocardial infarction with {EXTENT_WORDS[worst][0]} LGE at the {levels} level(s).",
                          f"LGE in keeping with {worst if worst != '<50%' else 'non-transmural'} infarction "
                          f"({levels})."]))
    return f"{intro}\n{tech}\nFINDINGS: {' '.join(sents)}\nIMPRESSION: {imp}"


def _lv_cov(lab: np.ndarray) -> np.ndarray | None:
    """Pixel covariance (2, 2) (row, col) of the filled LV (cavity + myocardium), None when it is tiny."""
    rr, cc = np.nonzero(lab >= 1)
    if len(rr) < 50:
        return None
    return np.cov(np.stack([rr, cc]).astype(float))


def _circularity(cov: np.ndarray) -> float:
    ev = np.linalg.eigvalsh(cov)
    return float(np.sqrt(max(ev[0], 0.0) / ev[1])) if ev[1] > 0 else float("nan")


def estimate_geometry(labels: list[np.ndarray], myo_volume_ml: float | None, slice_spacing_mm: float = 10.0,
                      fallback_mm: float = 1.5) -> dict:
    """(row, col) pixel spacing of one case's resized PNG slices, from its label maps.

    Stretch: the LV short axis is close to circular, so over the stack the median ratio of the filled LV's row and
    column variances is the squared stretch s^2 (row pixels per column pixel of the same length in mm; the
    uploader's resize is axis-aligned); row / column spacing then differ by 1/s. Area: the official myocardium
    volume (mL) over the labelled myocardium pixel count and the slice spacing gives the pixel area a (the volumes
    were computed from these very labels: their infarct fractions match the pixel counts exactly), so
    ``spacing = (sqrt(a / s), sqrt(a * s))``; without a volume the area is ``fallback_mm ** 2``.
    Returns spacing, stretch, its spread (interquartile range of the per-slice estimates), the method, and the
    LV circularity (minor / major axis of the covariance ellipse, median over slices) before and after."""
    covs = [c for c in (_lv_cov(lab) for lab in labels) if c is not None]
    if not covs:
        raise ValueError("no slice with an LV of 50 pixels or more: cannot estimate the geometry")
    ratios = np.array([np.sqrt(c[0, 0] / c[1, 1]) for c in covs])
    stretch = float(np.sqrt(np.median(ratios**2)))
    n_myo = int(sum(np.isin(lab, (2, 3, 4)).sum() for lab in labels))
    if myo_volume_ml is not None and np.isfinite(myo_volume_ml) and myo_volume_ml > 0 and n_myo > 0:
        area, method = myo_volume_ml * 1000.0 / (n_myo * slice_spacing_mm), "official volume"
    else:
        area, method = fallback_mm**2, f"assumed {fallback_mm:g} mm pixel area (no volume)"
    sp = (float(np.sqrt(area / stretch)), float(np.sqrt(area * stretch)))
    scale = np.diag(sp)
    q1, q3 = np.percentile(ratios, [25, 75])
    return {"spacing_mm": sp, "stretch": round(stretch, 4), "stretch_iqr": round(float(q3 - q1), 4),
            "pixel_area_mm2": round(float(area), 4), "method": method,
            "circularity_before": round(float(np.median([_circularity(c) for c in covs])), 4),
            "circularity_after": round(float(np.median([_circularity(scale @ c @ scale) for c in covs])), 4)}


def read_volumes(root: str | Path) -> dict[str, float]:
    """Case -> official myocardium volume (mL) from ``clinical_and_volumes.csv`` (empty when the file is absent)."""
    path = Path(root) / "clinical_and_volumes.csv"
    if not path.is_file():
        return {}
    out = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            try:
                out[row["case_id"].strip()] = float(row["myo"])
            except (KeyError, ValueError):
                continue
    return out


def slice_direction(cases: dict[str, list[tuple[int, Path, Path]]], labels: dict) -> tuple[bool, str]:
    """(slice000 is the apex?, note) by majority vote of the LV-area slope over cases."""
    votes = []
    for case, sl in cases.items():
        area = np.array([float((labels[(case, k)] >= 1).sum()) for k, _, _ in sl])
        if len(area) >= 3 and area.max() > 0:
            slope = np.polyfit(np.arange(len(area)), area / area.max(), 1)[0]
            if abs(slope) > 0.02:
                votes.append(slope > 0)
    apex_first = sum(votes) >= len(votes) - sum(votes) if votes else True
    return apex_first, (f"slice000 is the {'apex' if apex_first else 'base'}: LV area grows with the slice number "
                        f"in {sum(votes)} of {len(votes)} decisive cases")


def ingest_emidec(root: str | Path, out: str | Path, spacing_mm: float | None = None,
                  slice_spacing_mm: float = 10.0, frame=None) -> dict:
    """Ingest an EMIDEC-layout PNG folder into ``out`` (all slices, truth masks, label-derived reports.csv).

    Pixel spacing: ``spacing_mm`` given -> that isotropic spacing for every case; None (default) -> estimated per
    case by :func:`estimate_geometry` (stretch from LV circularity, area from the official myocardium volume with
    ``slice_spacing_mm`` between slices; ACDC, the same hospital's cine, has 10 mm in 85 of 100 patients).

    Wall words: ``frame`` (e.g. :class:`lgeclip.anatomy.frames.RvipFrame`, called once per case with
    [(image, spacing, myocardium, blood_pool, level)] and returning [(AHA map or None, reason)]) names the walls in
    the anatomical frame of the RV insertion points; slices it cannot frame, or every slice without ``frame``, use
    the display assumption (anterior up, septum left). Counts and reasons go to cohort.json."""
    from lgeclip.report import extract_lge_sentences, lge_status

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = find_cases(root)
    if not cases:
        raise FileNotFoundError(f"{root}: no X/ + Xannot/ folders with Case_<P|N>nnn_slicekkk.png files")
    labels = {(c, k): _read(lp) for c, sl in cases.items() for k, _, lp in sl}
    apex_first, order_note = slice_direction(cases, labels)
    volumes = read_volumes(root) if spacing_mm is None else {}
    records, excluded, report_rows, mismatch, geometry = [], [], [], [], {}
    frame_stats: dict = {"rvip_frame": 0, "display_fallback": 0, "reasons": {}}
    for case, sl in cases.items():
        key = patient_key(case)
        if spacing_mm is None:
            try:
                geo = estimate_geometry([labels[(case, k)] for k, _, _ in sl], volumes.get(case), slice_spacing_mm)
            except ValueError as e:
                excluded.append((key, f"geometry: {e}"))
                continue
            geometry[key] = geo
            sp = geo["spacing_mm"]
        else:
            sp = (float(spacing_mm), float(spacing_mm))
        group = NAME_RE.match(sl[0][1].name).group(2).upper()
        sl = sl[::-1] if apex_first else sl
        n = len(sl)
        per_level: dict[str, dict] = {}
        slices = []
        maps: list = [None] * n
        if frame is not None:
            items = [(_read(ip).astype(np.float32), sp, np.isin(labels[(case, k)], (2, 3, 4)),
                      labels[(case, k)] == 1, level_of(i, n)) for i, (k, ip, _) in enumerate(sl)]
            for i, (m, why) in enumerate(frame(items)):
                maps[i] = m
                if m is None:
                    frame_stats["display_fallback"] += 1
                    frame_stats["reasons"][why] = frame_stats["reasons"].get(why, 0) + 1
                else:
                    frame_stats["rvip_frame"] += 1
        for idx, (_, ip, _) in enumerate(sl):
            lab, level = labels[(case, sl[idx][0])], level_of(idx, n)
            g = scar_geometry(lab, level, segments=maps[idx])
            prev = per_level.get(level)
            if g["extent"] is not None and (prev is None or prev["extent"] is None
                                            or g["max_fraction"] > prev["max_fraction"]):
                g = {**g, "mvo": g["mvo"] or bool(prev and prev["mvo"])}
                per_level[level] = g
            elif prev is None:
                per_level[level] = g
            elif g["mvo"]:
                prev["mvo"] = True
            slices.append((idx, level, ip, lab))
        text = write_report(per_level, np.random.default_rng(int(stable_hash("emidec", case, length=8), 16)))
        label = lge_status(text)
        if label != {"P": "positive", "N": "negative"}[group]:
            mismatch.append(key)
        sentences = extract_lge_sentences(text)
        if not sentences:
            excluded.append((key, "generated report has no LGE sentence"))
            continue
        report_rows.append((key, f"EMIDEC-{stable_hash(case, length=8)}", text))
        for idx, level, ip, lab in slices:
            img = _read(ip).astype(np.float32)
            if img.shape != lab.shape:
                excluded.append((key, f"slice {idx}: image {img.shape} and label {lab.shape} differ"))
                continue
            rel = f"slices/{key}/{idx}.npz"
            scar = np.isin(lab, (3, 4)).astype(np.uint8)
            save_slice(out / rel, img, sp, myocardium=np.isin(lab, (2, 3, 4)).astype(np.uint8),
                       blood_pool=(lab == 1).astype(np.uint8), scar=scar, mvo=(lab == 4).astype(np.uint8),
                       rvip=np.full((2, 2), np.nan, np.float32))
            records.append(SliceRecord(patient_key=key, level=level, slice_index=idx, n_slices=n, image_path=rel,
                                       spacing_mm=sp, sentences=sentences, label=label,
                                       source="emidec", has_masks=True, scar_truth=int(scar.any()),
                                       scar_pattern="ischaemic" if group == "P" else ""))
    write_manifest(out, records)
    write_excluded(out, excluded)
    splits = ensure_splits(out)  # the cohort's one patient split, read by every later stage
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["patient_id", "accession", "report_text"])
    w.writerows(report_rows)
    atomic_write_text(out / "reports.csv", buf.getvalue())
    dt = time.perf_counter() - t0
    summary = {
        "source": "emidec", "n_cases": len(cases), "n_ingested": len(report_rows), "n_slices": len(records),
        "labels": {k: sum(1 for r in report_rows if lge_status(r[2]) == k) for k in ("positive", "negative")},
        "label_group_mismatch": mismatch, "n_excluded_rows": len(excluded),
        "slices_with_scar": sum(r.scar_truth or 0 for r in records),
        "geometry": _geometry_summary(geometry, slice_spacing_mm) if geometry else None,
        "wall_frame": {"method": getattr(frame, "source", "AHA segments from RVIPs") if frame is not None
                       else "display assumption (anterior up, septum left)", **frame_stats},
        "settings": {"spacing_mm": spacing_mm if spacing_mm is not None else "estimated per case",
                     "order": order_note,
                     "display_assumption": "anterior up, septum image-left, lateral image-right, inferior down",
                     "reports_patient_id": "patient_key (reports.csv patient_id column)"},
        "timings_s": {"total": round(dt, 3), "per_case": round(dt / len(cases), 4)},
        "splits": {"file": str(splits_path(out)), "n_folds": splits["n_folds"], "seed": splits["seed"]},
    }
    atomic_write_json(out / "cohort.json", summary)
    return summary


def _geometry_summary(geometry: dict[str, dict], slice_spacing_mm: float) -> dict:
    """Cohort-level view of the per-case estimates (per case: keyed by patient_key, no case names)."""
    q = lambda k: [round(float(x), 4) for x in np.percentile([g[k] for g in geometry.values()], [0, 25, 50, 75, 100])]  # noqa: E731
    return {
        "slice_spacing_mm": slice_spacing_mm,
        "methods": {m: sum(g["method"] == m for g in geometry.values())
                    for m in sorted({g["method"] for g in geometry.values()})},
        "stretch_quantiles": q("stretch"),
        "circularity_before_quantiles": q("circularity_before"),
        "circularity_after_quantiles": q("circularity_after"),
        "spacing_row_mm_quantiles": [round(float(x), 4) for x in np.percentile(
            [g["spacing_mm"][0] for g in geometry.values()], [0, 25, 50, 75, 100])],
        "spacing_col_mm_quantiles": [round(float(x), 4) for x in np.percentile(
            [g["spacing_mm"][1] for g in geometry.values()], [0, 25, 50, 75, 100])],
        "per_case": geometry,
    }
