"""Evaluation of the anatomy nets against cohort truth: myocardium Dice on the native grid, RVIP error in mm.

``evaluate_anatomy`` predicts every held-out slice of a cohort (the segmentation run's fold of the cohort's
``splits.json``, the file its training read) and writes ``anatomy_eval.json``, ``per_slice.csv`` and a
picture grid ``anatomy_grid.png`` (image, predicted myocardium contour and RVIPs vs truth). Cohorts without RVIP
truth (EMIDEC) get Dice only; their grid still shows the predicted RVIPs for a human to judge.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import yaml

from lgeclip.anatomy.aha import aha_segment_map
from lgeclip.anatomy.predictor import AnatomyPredictor
from lgeclip.data.anatomy import SPLITS, cohort_splits
from lgeclip.io.cohort import load_slice, read_manifest
from lgeclip.preprocess.chain import plausibility_problem, stack_consistent
from lgeclip.preprocess.config import PreprocessCfg
from lgeclip.utils import atomic_write_json, atomic_write_text, get_logger


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * (p & t).sum() / denom)


def _volume_dice(rows: list[dict]) -> float:
    """Dice of a patient's evaluated slices taken together as one volume (the EMIDEC challenge's 3-D Dice);
    a failed slice counts with an empty prediction."""
    inter = sum(r["myo_overlap_px"] for r in rows)
    denom = sum(r["myo_pred_px"] + r["myo_true_px"] for r in rows)
    return 1.0 if denom == 0 else float(2.0 * inter / denom)


def _stats(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if v.size == 0:
        return {"n": 0, "median": None, "p90": None, "mean": None}
    return {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "mean": float(v.mean())}


def _reason_counts(problems: list[str]) -> dict[str, int]:
    """Counts per reason, numbers stripped so that one kind of failure is one entry."""
    import re

    out: dict[str, int] = {}
    for p in problems:
        k = re.sub(r"-?\d+(\.\d+)?", "#", p)
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _run_fold(seg_run: Path) -> int:
    """The splits.json fold the segmentation run trained on (``data.fold`` of its config.yaml; default 0)."""
    raw = yaml.safe_load((Path(seg_run) / "config.yaml").read_text()) or {}
    return int((raw.get("task", raw).get("data") or {}).get("fold", 0))


def evaluate_anatomy(seg_run: Path, landmarks_run: Path, cohort: Path, out: Path | None = None, split: str = "test",
                     device: str | None = None, batch: int = 16, grid_n: int = 16,
                     predictor: AnatomyPredictor | None = None, tta: bool | str = False,
                     stack_max_dev_deg: float = 0.0) -> dict:
    """Myocardium Dice (per slice; per patient as the mean of its slices and as one volume) and RVIP error (mm;
    anterior, inferior, pooled) of the two nets on ``split`` ("train" / "val" / "test" / "all") of ``cohort``;
    writes JSON, CSV and a PNG grid. ``stack_max_dev_deg`` > 0: RVIPs made consistent along each stack first
    (``PreprocessCfg.rvip_stack_max_dev_deg``)."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
    cohort = Path(cohort)
    out = Path(out) if out is not None else cohort / "anatomy_eval"
    log = get_logger()
    pred = predictor or AnatomyPredictor.from_run_dirs(seg_run, landmarks_run, device=device, tta=tta)
    fold = _run_fold(seg_run)
    which = {} if split == "all" else cohort_splits(cohort, fold)
    records = [r for r in read_manifest(cohort) if split == "all" or which[r.patient_key] == split]
    n_no_masks = sum(not r.has_masks for r in records)
    records = [r for r in records if r.has_masks]
    if not records:
        raise ValueError(f"{cohort}: no slice with truth masks in split {split!r} (fold {fold} of its splits.json)")
    rows, shown = [], []
    grid_ids = {records[i].slice_id for i in np.linspace(0, len(records) - 1, min(grid_n, len(records))).astype(int)}
    stack_cfg = PreprocessCfg(rvip_stack_max_dev_deg=stack_max_dev_deg)
    n_stack = 0
    by_patient: dict[str, list] = {}
    for r in records:  # a patient's slices are predicted together (its stacks, for the stack-consistency pass)
        by_patient.setdefault(r.patient_key, []).append(r)
    for chunk in by_patient.values():
        arrays = [load_slice(cohort / r.image_path) for r in chunk]
        results = pred.predict_batch([(a["image"], a["spacing_mm"]) for a in arrays], [r.slice_id for r in chunk],
                                     errors="none")
        results, n = stack_consistent(results, [a["spacing_mm"] for a in arrays],
                                      [r.stack[0] for r in chunk],
                                      [r.stack[1] for r in chunk], stack_cfg)
        n_stack += n
        for r, a, res in zip(chunk, arrays, results, strict=True):
            sp = np.asarray(a["spacing_mm"], float).reshape(-1)
            sp = np.array([sp[0], sp[-1]])
            true_myo = np.asarray(a["myocardium"]) > 0
            row = {"slice_id": r.slice_id, "patient_key": r.patient_key, "level": r.level, "failed": res is None,
                   "dice_myo": 0.0, "dice_blood": 0.0, "err_ant_mm": np.nan, "err_inf_mm": np.nan,
                   "myo_true_px": int(true_myo.sum()), "myo_pred_px": 0, "myo_overlap_px": 0,
                   "scar_px": 0, "scar_in_myo_px": 0, "scar_in_blood_px": 0, "problem": "anatomy failed"}
            scar = np.asarray(a["scar"]) > 0 if "scar" in a else np.zeros_like(true_myo)
            row["scar_px"] = int(scar.sum())
            truth = np.asarray(a.get("rvip", np.full((2, 2), np.nan)), float).reshape(2, 2)
            if res is not None:
                row["problem"] = plausibility_problem(res, sp) or ""
                pred_myo = np.asarray(res.myocardium) > 0
                row["dice_myo"] = dice(pred_myo, true_myo)
                row["myo_pred_px"], row["myo_overlap_px"] = int(pred_myo.sum()), int((pred_myo & true_myo).sum())
                row["dice_blood"] = dice(res.blood_pool, a.get("blood_pool", np.zeros_like(res.blood_pool)))
                row["scar_in_myo_px"] = int((scar & pred_myo).sum())
                row["scar_in_blood_px"] = int((scar & (np.asarray(res.blood_pool) > 0)).sum())
                for k, name in enumerate(("err_ant_mm", "err_inf_mm")):
                    if np.all(np.isfinite(truth[k])):
                        row[name] = float(np.hypot(*((res.rvip[k] - truth[k]) * sp)))
            rows.append(row)
            if r.slice_id in grid_ids:
                shown.append((r.slice_id, a, res, row))
    patients: dict[str, list[dict]] = {}
    for row in rows:
        patients.setdefault(row["patient_key"], []).append(row)
    per_patient = {k: float(np.mean([r["dice_myo"] for r in v])) for k, v in sorted(patients.items())}
    per_patient_volume = {k: _volume_dice(v) for k, v in sorted(patients.items())}
    ant, inf = [r["err_ant_mm"] for r in rows], [r["err_inf_mm"] for r in rows]
    summary = {
        "cohort": str(cohort), "split": split, "fold": fold, "tta": pred.tta, "n_slices": len(rows),
        "stack_max_dev_deg": stack_max_dev_deg, "n_rvip_stack_changed": n_stack,
        "n_patients": len(patients),
        "n_failed": sum(r["failed"] for r in rows), "n_without_masks": n_no_masks,
        "dice_myo_mean": float(np.mean([r["dice_myo"] for r in rows])),
        "dice_myo_patient_mean": float(np.mean(list(per_patient.values()))),
        "dice_myo_volume_mean": float(np.mean(list(per_patient_volume.values()))),
        "dice_myo_per_level": {lv: float(np.mean([r["dice_myo"] for r in rows if r["level"] == lv]))
                               for lv in sorted({r["level"] for r in rows})},
        "dice_blood_mean": float(np.mean([r["dice_blood"] for r in rows])),
        "rvip_mm": {"anterior": _stats(ant), "inferior": _stats(inf), "pooled": _stats(ant + inf)},
        # the preprocessing checks (default recipe, no rvip_fallback) on the predicted anatomy
        "plausible_fraction": float(np.mean([r["problem"] == "" for r in rows])),
        "implausible_reasons": _reason_counts([r["problem"] for r in rows if r["problem"]]),
        # where truth scar (enhancement) went: bright scar given to the cavity is the typical LGE failure
        **_scar_summary(rows),
        "dice_myo_per_patient": per_patient,
        "dice_myo_volume_per_patient": per_patient_volume,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "anatomy_eval.json", summary)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "per_slice.csv", buf.getvalue())
    _grid(shown, out / "anatomy_grid.png")
    summary["out"] = str(out)
    log.info(f"anatomy eval {cohort} [{split}]: Dice myo {summary['dice_myo_mean']:.3f} over {len(rows)} slices "
             f"(patient volumes {summary['dice_myo_volume_mean']:.3f}), "
             f"RVIP pooled median {summary['rvip_mm']['pooled']['median']} mm, {summary['n_failed']} failed, "
             f"{100 * summary['plausible_fraction']:.0f}% plausible")
    return summary


def _scar_summary(rows: list[dict]) -> dict:
    """Fractions of the truth scar pixels inside the predicted myocardium / blood pool (pooled over slices) and the
    myocardium Dice on slices with and without scar; empty when the cohort has no scar truth."""
    n = sum(r["scar_px"] for r in rows)
    if n == 0:
        return {}
    with_scar = [r["dice_myo"] for r in rows if r["scar_px"] > 0]
    without = [r["dice_myo"] for r in rows if r["scar_px"] == 0]
    return {"scar_px": n, "scar_in_myo_fraction": sum(r["scar_in_myo_px"] for r in rows) / n,
            "scar_in_blood_fraction": sum(r["scar_in_blood_px"] for r in rows) / n,
            "dice_myo_scar_slices": float(np.mean(with_scar)), "n_scar_slices": len(with_scar),
            "dice_myo_no_scar_slices": float(np.mean(without)) if without else None}


def _grid(shown: list, path: Path, half_mm: float = 55.0) -> None:
    """Picture grid: image around the LV, predicted myocardium contour (red) + RVIPs (red A/I) vs truth (green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(shown))
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (sid, a, res, row) in zip(axes.ravel(), shown, strict=False):
        img = np.asarray(a["image"], float)
        lo, hi = np.percentile(img, (1, 99))
        sp = np.asarray(a["spacing_mm"], float).reshape(-1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=sp[0] / sp[-1])  # square millimetres on screen
        if a.get("myocardium") is not None and a["myocardium"].any():
            ax.contour(a["myocardium"], levels=[0.5], colors="lime", linewidths=0.8)
        truth = np.asarray(a.get("rvip", np.full((2, 2), np.nan)), float).reshape(2, 2)
        for k in range(2):
            if np.all(np.isfinite(truth[k])):
                ax.plot(truth[k, 1], truth[k, 0], "o", mfc="none", mec="lime", ms=7)
        if res is not None:
            if res.myocardium.any():
                ax.contour(res.myocardium, levels=[0.5], colors="red", linewidths=0.8)
            if row.get("problem") == "":  # plausible: the AHA segments these RVIPs place (numbers at their centres)
                seg = aha_segment_map(res.myocardium, tuple(res.rvip[0]), tuple(res.rvip[1]), row["level"],
                                      center=tuple(res.lv_center))
                ax.imshow(np.ma.masked_equal(seg, 0), cmap="tab20", vmin=1, vmax=20, alpha=0.35,
                          aspect=sp[0] / sp[-1], interpolation="nearest")
                for v in np.unique(seg[seg > 0]):
                    rr, cc = np.nonzero(seg == v)
                    ax.text(cc.mean(), rr.mean(), str(int(v)), color="white", fontsize=6, ha="center", va="center")
            for k, lab in enumerate("AI"):
                r, c = res.rvip[k]
                ax.plot(c, r, "x", color="red", ms=6)
                ax.text(c + 2, r - 2, lab, color="yellow", fontsize=8)
            cr, cc = res.lv_center
            ax.set_xlim(cc - half_mm / sp[-1], cc + half_mm / sp[-1])
            ax.set_ylim(cr + half_mm / sp[0], cr - half_mm / sp[0])
            title = f"Dice {row['dice_myo']:.2f}"
            if np.isfinite(row["err_ant_mm"]):
                title += f"  A {row['err_ant_mm']:.1f} / I {row['err_inf_mm']:.1f} mm"
        else:
            title = "no LV found"
        ax.set_title(f"{sid[-14:]}\n{title}", fontsize=7)
    fig.suptitle("red: predicted myocardium / RVIPs (A anterior, I inferior); green: truth; colours + numbers: AHA "
                 "segments from the predicted RVIPs (plausible slices)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    from lgeclip.utils import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())
