"""ACDC layout (cine short axis, NIfTI, labels 0 background / 1 RV cavity / 2 LV myocardium / 3 LV cavity) -> an
anatomy cohort folder (``source="acdc"``): every slice with myocardium of the end-diastolic and end-systolic frames,
with masks and RV-insertion-point (RVIP) truth derived from the masks. No reports: the cohort trains and tests the
anatomy nets only.

Layout: ``ROOT/patientNNN/`` (or ``ROOT/training/`` / ``ROOT/testing/`` holding them) with ``Info.cfg`` (``ED``,
``ES`` frame numbers, ``Group``) and ``patientNNN_frameFF.nii.gz`` + ``patientNNN_frameFF_gt.nii.gz``. Pixel spacing
comes from the NIfTI header; rows / columns of a slice are the volume's first / second voxel axes.

RVIP truth. The RV cavity touches the LV myocardium along an arc (the septum); its two ends, where the RV free wall
inserts, are the RVIPs. Contact = myocardium pixels within ``touch_mm`` of the RV cavity; their angles around the LV
centre are binned (5 degrees), gaps up to ``max_gap_deg`` are closed and the longest circular run is the arc. Each
end is the mean of the contact pixels within 5 degrees of that end of the run. A slice with no RV, no contact, or
an arc shorter than ``min_arc_deg`` / longer than ``max_arc_deg`` keeps its masks (segmentation) but no RVIP, and
the reason is counted.

Orientation. ACDC's NIfTI headers carry a placeholder affine (diag(-1, -1, 1) for all 100 training patients),
so the header cannot say which way the patient faces. The arrays hold the scanner's images transposed: shown with
rows = the volume's SECOND axis (``transpose=True``, the default) every inspected patient appears in the standard
short-axis display (RV on the image left, abdomen below the heart, anterior chest wall above it), and shown as
stored, mirrored. Slices are stored in that display (rows x columns = axis 1 x axis 0, spacing swapped to match).

Anterior vs inferior then follows the anatomy of that display: the standard short-axis view (AHA) looks from the
apex towards the base with the anterior wall up and the RV on the left, so around the LV centre c the anterior (a)
and inferior (i) RVIPs satisfy ``cross2(a - c, i - c) > 0`` with ``cross2(u, v) = u_row * v_col - u_col * v_row``
(the arc runs clockwise on screen from the inferior to the anterior end) whatever the in-plane rotation.
:func:`name_rvips` takes the handedness sign; a mirrored display would pass -1. Base vs apex comes from the stack
(the LV area shrinks towards the apex), and ``cohort.json`` records how many frames share one voxel handedness
(sign(det affine) x slice direction): a single value means one naming rule fits the whole folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from lgeclip.io.cohort import SliceRecord, patient_key, save_slice, write_excluded, write_manifest
from lgeclip.io.dicom import level_of
from lgeclip.io.splits import ensure_splits, make_splits, splits_path
from lgeclip.utils import atomic_write_json

PATIENT_RE = re.compile(r"^patient(\d+)$")
ACDC_LABELS = {"rv": 1, "myocardium": 2, "lv": 3}
BIN_DEG = 5.0


def find_patients(root: str | Path) -> list[Path]:
    """Patient folders (``patientNNN`` with an ``Info.cfg``) under ``root`` or its ``training/`` / ``testing/``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    bases = [root] + [root / s for s in ("training", "testing") if (root / s).is_dir()]
    out = {p.resolve(): p for b in bases for p in b.iterdir() if p.is_dir() and PATIENT_RE.match(p.name)
           and (p / "Info.cfg").is_file()}
    return sorted(out.values(), key=lambda p: p.name)


def read_info(path: Path) -> dict[str, str]:
    """``Info.cfg`` as a dict (``key: value`` lines)."""
    info = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def _circular_runs(on: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of the runs of True in a circular boolean array (one run of full length if all True)."""
    n = len(on)
    if on.all():
        return [(0, n)]
    if not on.any():
        return []
    start = int(np.argmin(on))  # a False bin: unroll the circle there
    rolled = np.roll(on, -start)
    runs, i = [], 0
    while i < n:
        if rolled[i]:
            j = i
            while j < n and rolled[j]:
                j += 1
            runs.append(((i + start) % n, j - i))
            i = j
        else:
            i += 1
    return runs


def contact_arc_ends(myocardium: np.ndarray, rv: np.ndarray, center: tuple[float, float],
                     spacing: tuple[float, float], touch_mm: float = 3.0, max_gap_deg: float = 15.0,
                     min_arc_deg: float = 30.0, max_arc_deg: float = 270.0) -> tuple[np.ndarray | None, str]:
    """The two ends (2, 2) (row, col) of the RV / LV-myocardium contact arc, in run order (counter-clockwise in
    angle ``atan2(row, col)``: the first end comes first), or (None, reason)."""
    myo, rv = np.asarray(myocardium) > 0, np.asarray(rv) > 0
    if not rv.any():
        return None, "no RV cavity on the slice"
    dist = ndi.distance_transform_edt(~rv, sampling=spacing)
    touch = myo & (dist <= touch_mm)
    if not touch.any():
        return None, "RV cavity does not touch the myocardium"
    r, c = np.nonzero(touch)
    ang = np.degrees(np.arctan2(r - center[0], c - center[1])) % 360
    nb = int(round(360 / BIN_DEG))
    on = np.bincount((ang // BIN_DEG).astype(int) % nb, minlength=nb) > 0
    gap = int(max_gap_deg // BIN_DEG)
    closed = on.copy()
    for s, n in _circular_runs(~on):  # close short gaps between contact bins
        if n <= gap:
            closed[(s + np.arange(n)) % nb] = True
    runs = _circular_runs(closed)
    s, n = max(runs, key=lambda t: t[1])
    arc = n * BIN_DEG
    if arc < min_arc_deg:
        return None, f"contact arc shorter than {min_arc_deg:g} deg"
    if arc > max_arc_deg:
        return None, f"contact arc longer than {max_arc_deg:g} deg (RV around the LV)"
    rel = (ang - s * BIN_DEG) % 360  # angle from the run's start, in [0, 360)
    inside = rel < arc
    rel, rr, cc = rel[inside], r[inside], c[inside]
    lo, hi = rel <= rel.min() + BIN_DEG, rel >= rel.max() - BIN_DEG
    ends = np.array([[rr[lo].mean(), cc[lo].mean()], [rr[hi].mean(), cc[hi].mean()]], np.float32)
    return ends, ""


def name_rvips(ends: np.ndarray, center: tuple[float, float], handedness: float) -> np.ndarray:
    """[anterior, inferior] (2, 2) from two unnamed ends: the pair with ``handedness * cross2(a - c, i - c) > 0``
    (``handedness`` +1 in the standard display viewed from the apex, -1 in a mirrored one; module docstring)."""
    c = np.asarray(center, float)
    u, v = np.asarray(ends[0], float) - c, np.asarray(ends[1], float) - c
    cross = u[0] * v[1] - u[1] * v[0]
    return np.asarray(ends if handedness * cross > 0 else ends[::-1], np.float32)


def _lv_center(myo: np.ndarray, lv: np.ndarray) -> tuple[float, float]:
    src = lv if lv.any() else myo
    rr, cc = np.nonzero(src)
    return float(rr.mean()), float(cc.mean())


def base_to_apex(gt: np.ndarray) -> int:
    """+1 when the slice index grows from base to apex (LV area, cavity + myocardium, shrinks), else -1."""
    area = np.array([float(np.isin(gt[..., k], (2, 3)).sum()) for k in range(gt.shape[-1])])
    ks = np.nonzero(area > 0)[0]
    if len(ks) < 2:
        return 1
    slope = np.polyfit(ks, area[ks] / area.max(), 1)[0]
    return 1 if slope <= 0 else -1


def _load(path: Path):
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path.name}: expected a 3-D volume, got shape {data.shape}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, zooms, np.asarray(img.affine, float)


def ingest_acdc(root: str | Path, out: str | Path, frames: tuple[str, ...] = ("ED", "ES"), touch_mm: float = 3.0,
                transpose: bool = True, n_folds: int = 5, seed: int = 0) -> dict:
    """Ingest an ACDC-layout folder into the cohort folder ``out`` (manifest, slice npz with masks and RVIP truth,
    ``splits.json`` stratified by ACDC group, ``excluded.csv``, ``cohort.json``); returns the summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    patients = find_patients(root)
    if not patients:
        raise FileNotFoundError(f"{root}: no patientNNN/ folders with Info.cfg (ACDC layout)")
    records, excluded, groups = [], [], {}
    no_rvip: dict[str, int] = {}
    n_rvip, handed = 0, {"+": 0, "-": 0}
    for pdir in patients:
        key = patient_key(f"acdc-{pdir.name}")
        try:
            info = read_info(pdir / "Info.cfg")
            frame_no = {f: int(info[f]) for f in frames}
            vols = {}
            for f, k in frame_no.items():
                stem = pdir / f"{pdir.name}_frame{k:02d}"
                for what, suffix in (("image", ".nii.gz"), ("labels", "_gt.nii.gz")):
                    if not stem.with_name(stem.name + suffix).is_file():
                        raise ValueError(f"{f} frame {k:02d}: no {what} NIfTI")
                img, zooms, aff = _load(stem.with_name(stem.name + ".nii.gz"))
                gt, _, _ = _load(stem.with_name(stem.name + "_gt.nii.gz"))
                if img.shape != gt.shape:
                    raise ValueError(f"frame {k}: image {img.shape} and labels {gt.shape} differ")
                vols[f] = (img.astype(np.float32), np.rint(gt).astype(np.uint8), zooms, aff)
        except (OSError, KeyError, ValueError, EOFError) as e:  # a named reason, the batch goes on
            # the folder name is the dataset's patient ID: keep it (and paths) out of the reason
            reason = f"{type(e).__name__}: {e}".replace(str(pdir), "<patient>").replace(pdir.name, "<patient>")
            excluded.append((key, reason))
            continue
        groups[key] = info.get("Group", "unknown")
        k_dir = base_to_apex(vols[frames[0]][1])
        n_before = len(records)
        for fi, f in enumerate(frames):
            img, gt, zooms, aff = vols[f]
            voxel_hand = float(np.sign(np.linalg.det(aff[:3, :3])) or 1.0) * k_dir
            handed["+" if voxel_hand > 0 else "-"] += 1
            ks = [k for k in range(gt.shape[-1]) if (gt[..., k] == ACDC_LABELS["myocardium"]).any()]
            order = ks if k_dir > 0 else ks[::-1]  # base first
            spacing = (zooms[1], zooms[0]) if transpose else (zooms[0], zooms[1])
            for idx, k in enumerate(order):
                lab = gt[..., k].T if transpose else gt[..., k]
                image = img[..., k].T if transpose else img[..., k]
                myo, lv, rv = (lab == ACDC_LABELS[n] for n in ("myocardium", "lv", "rv"))
                center = _lv_center(myo, lv)
                ends, why = contact_arc_ends(myo, rv, center, spacing, touch_mm=touch_mm)
                if ends is None:
                    rvip = np.full((2, 2), np.nan, np.float32)
                    no_rvip[why] = no_rvip.get(why, 0) + 1
                else:
                    rvip = name_rvips(ends, center, 1.0 if transpose else -1.0)
                    n_rvip += 1
                rel = f"slices/{key}/{f.lower()}{idx:02d}.npz"
                save_slice(out / rel, image, spacing, myocardium=myo.astype(np.uint8),
                           blood_pool=lv.astype(np.uint8), rv=rv.astype(np.uint8), rvip=rvip)
                records.append(SliceRecord(patient_key=key, level=level_of(idx, len(order)),
                                           slice_index=fi * len(order) + idx, n_slices=len(order), image_path=rel,
                                           spacing_mm=spacing, source="acdc", has_masks=True))
        if len(records) == n_before:
            excluded.append((key, "no slice with myocardium"))
            groups.pop(key)
    write_manifest(out, records)
    write_excluded(out, excluded)
    if not splits_path(out).is_file() and groups:
        atomic_write_json(splits_path(out), make_splits(groups, n_folds, seed, stratified_by="ACDC group"))
    splits = ensure_splits(out)
    dt = time.perf_counter() - t0
    summary = {
        "source": "acdc", "n_patients": len(patients), "n_ingested": len(groups), "n_slices": len(records),
        "frames": list(frames),
        "groups": {g: sum(1 for v in groups.values() if v == g) for g in sorted(set(groups.values()))},
        "rvip": {"with_truth": n_rvip, "without": dict(sorted(no_rvip.items()))},
        "handedness_frames": handed, "n_excluded": len(excluded),
        "settings": {"touch_mm": touch_mm, "bin_deg": BIN_DEG, "transpose": transpose,
                     "display": "standard short axis (RV left, anterior up)" if transpose else "as stored (mirrored)",
                     "anterior_rule": "cross2(a - c, i - c) > 0 in the standard display (viewed from the apex)"},
        "timings_s": {"total": round(dt, 3)},
        "splits": {"file": str(splits_path(out)), "n_folds": splits["n_folds"], "seed": splits["seed"],
                   "stratified_by": splits.get("stratified_by")},
    }
    atomic_write_json(out / "cohort.json", summary)
    return summary
