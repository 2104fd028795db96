"""``lgeclip predict``: DICOM studies -> PSIR LGE series -> anatomy -> preprocessing -> P(LGE) per slice and patient.

Every slice of the selected series is scored. The patient call uses the slices the training cohort used
(basal / mid / apical at ~20 / 50 / 80 % of the stack, ``choose_levels``) aggregated like in evaluation, so a
prediction means the same as the evaluation numbers; the all-slice aggregate is reported next to it.

Output folder: ``<key>/prediction.json`` + ``prediction.png`` per study (the patient key, or
``<patient key>~<study hash>`` for each study of a patient with several in the batch), ``predictions.csv`` (one row per
study), ``failures.csv`` (study, reason) and ``summary.json``. Patients appear only by their salted hash key:
no name, ID, birth date or source folder name is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lgeclip.infer.multilabel import ASK_METHODS
from lgeclip.infer.segments import BAND_MM, DEFAULT_METHOD, METHOD_DESCRIPTIONS, plot_bullseye, study_segments
from lgeclip.io.dicom import (
    choose_levels,
    group_studies,
    level_of,
    load_rules,
    order_slices,
    read_pixels,
    scan_tree,
    select_lge_series,
    study_keys,
)
from lgeclip.io.ingest import phi_tokens, scrub
from lgeclip.metrics import aggregate
from lgeclip.utils import atomic_write_json, atomic_write_text, csv_text, get_logger, stable_hash


def predict_study(predictor, series: list, rules=None, with_sources: bool = False, key: str | None = None,
                  method: str = DEFAULT_METHOD):
    """One study's prediction (JSON-ready dict) and the model-input image of each slice (None where skipped)
    (+ the source DICOM path of each slice with ``with_sources``: never written to JSON, folder names may hold
    PHI); raises ValueError with the reason when the study cannot be scored. ``key``: the study's key in its
    batch (``io.dicom.study_keys``; default: the study alone); ``method``: how segments are scored
    (``infer.segments.METHOD_DESCRIPTIONS``)."""
    if method not in METHOD_DESCRIPTIONS:
        raise ValueError(f"method must be one of {tuple(METHOD_DESCRIPTIONS)}, got {method!r}")
    key = key or study_keys({series[0].study_uid: series})[series[0].study_uid]
    toks = phi_tokens(series[0].patient_id, series[0].patient_name, series[0].birth_date)
    chosen, why = select_lge_series(series, rules)
    if chosen is None:
        raise ValueError(scrub(why, toks))
    ordered, _ = order_slices(chosen, rules.position_tol_mm if rules else 0.5)
    items, kept, dropped = [], [], []
    for inst in ordered:
        try:
            img, sp = read_pixels(inst.path)
        except Exception as e:  # one unreadable file drops one slice, not the study
            # read_pixels' ValueErrors name the problem (never a path or a name); others by their type only
            dropped.append(str(e) if isinstance(e, ValueError) else f"unreadable pixel data ({type(e).__name__})")
            get_logger("lgeclip.predict").warning("%s: slice dropped (%s)", key, dropped[-1])
            continue
        if sp is None:
            raise ValueError("missing PixelSpacing in the LGE series")
        items.append((img, sp))
        kept.append(inst)
    if len(items) < 1:
        raise ValueError("no readable slice in the LGE series" + (f" ({dropped[0]})" if dropped else ""))
    n = len(items)
    protocol = dict(choose_levels(n, 3))
    scores = predictor.predict_slices([(img, sp, level_of(i, n)) for i, (img, sp) in enumerate(items)])
    how, thr = predictor.cfg.eval.aggregation, predictor.cfg.eval.threshold
    # where: P(scar) per AHA segment and wall third of each scored slice (infer.segments)
    regional = predictor.localise(scores, method=method) if hasattr(predictor, "localise") else [None] * len(scores)
    slices = []
    for i, s in enumerate(scores):
        row = {"index": i, "level": s.level, "p_lge": s.p_lge, "protocol_level": protocol.get(i), "skipped": s.reason}
        if regional[i] is not None:
            row.update({"segments": {str(k): v for k, v in regional[i]["segments"].items()},
                        "depth": regional[i]["depth"], "regional_skipped": regional[i]["reason"]})
            if "answers" in regional[i]:  # asked in words: each question's answer distribution (wall, depth, pattern)
                row["answers"] = {q: {str(k): v for k, v in a.items()} for q, a in regional[i]["answers"].items()}
        slices.append(row)
    used = [s["p_lge"] for s in slices if s["protocol_level"] and s["p_lge"] is not None]
    every = [s["p_lge"] for s in slices if s["p_lge"] is not None]
    if not every:
        raise ValueError("no slice could be scored: " + "; ".join(sorted({s.reason or "" for s in scores})))
    p_patient = aggregate(np.array(used or every), how)
    pred = {
        "patient_key": key, "series": scrub(chosen.label, toks),
        "n_slices": n, "slices": slices,
        "p_lge": float(p_patient), "lge": bool(p_patient >= thr), "threshold": thr, "aggregation": how,
        "patient_slices": "protocol levels" if used else "all scored slices (protocol levels failed)",
        "p_lge_all_slices": float(aggregate(np.array(every), how)),
        "model": {"task": predictor.cfg.task, "recipe": predictor.cfg.name, "model_sha256": predictor.model_id,
                  "config_sha256": predictor.config_id},
    }
    answered = [(s.level, r) for s, r in zip(scores, regional, strict=True) if r is not None]
    if answered:
        pred["segments"] = study_segments([lv for lv, _ in answered], [r for _, r in answered])
        pred["localisation"] = (f"{method}: per slice, {METHOD_DESCRIPTIONS[method][0].format(band=f'{BAND_MM:g}')}"
                                "; per segment the maximum over the scored slices of its level")
        pred["localisation_method"] = method
    images = [s.image for s in scores]
    return (pred, images, [inst.path for inst in kept]) if with_sources else (pred, images)


def plot_prediction(pred: dict, imgs: list[np.ndarray | None], path: Path) -> None:
    """One row of model-input slices (base -> apex) titled with P(LGE), protocol slices outlined, and the bullseye of
    the study's segment table when it has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(imgs)
    eye = "segments" in pred
    fig, axes = plt.subplots(1, n + eye, figsize=(1.9 * (n + eye * 1.3), 2.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.0] * n + [1.3] * eye})
    if eye:
        scores = {r["segment"]: r["score"] for r in pred["segments"]}
        top = max([v for v in scores.values() if v is not None] or [0.0])
        # coloured up to the largest score (at least 0.1: a study where no segment moves P(LGE) stays pale)
        what = METHOD_DESCRIPTIONS.get(pred.get("localisation_method", "occlude"), ("", "score"))[1]
        plot_bullseye(axes[0][-1], scores, vmax=max(top, 0.1), title=f"where: {what} (max {top:.2f})")
    for ax, img, s in zip(axes[0][:n], imgs, pred["slices"], strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        if img is None:
            ax.set_facecolor("0.85")
            ax.set_title(f"{s['level']}\nskipped", fontsize=8)
            continue
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        p = s["p_lge"]
        ax.set_title(f"{s['level']}\nP(LGE)={p:.2f}", fontsize=8, color="firebrick" if p >= pred["threshold"]
                     else "black")
        if s["protocol_level"]:
            for sp in ax.spines.values():
                sp.set_edgecolor("tab:blue")
                sp.set_linewidth(2.5)
    verdict = "LGE" if pred["lge"] else "no LGE"
    fig.suptitle(f"{pred['patient_key']}: {verdict} (patient P(LGE)={pred['p_lge']:.2f}, {pred['aggregation']} over "
                 f"blue-framed slices; {pred['model']['recipe']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def predict_studies(studies: str | Path, run: str | Path, out: str | Path, seg_run: str | Path | None = None,
                    landmarks_run: str | Path | None = None, rules: str | Path | None = None,
                    predictor=None, figures: bool = True, dicom_out: bool = False,
                    method: str = DEFAULT_METHOD) -> dict:
    """Predict every study under ``studies`` with the model of run folder ``run``; returns the summary.

    ``method``: how each AHA segment is scored (``infer.segments.METHOD_DESCRIPTIONS``; asking in words needs a
    CLIP run).

    ``dicom_out``: also write ``<patient_key>/lgeclip_sr.dcm`` (TID 1500 measurement report) and
    ``lgeclip_sc.dcm`` (Secondary Capture of ``prediction.png``) into the source study (``infer.dicom_out``).

    A study that fails (no LGE series, no LV, unreadable files, ...) is recorded in ``failures.csv`` with the
    reason and the others go on."""
    from lgeclip.infer.zeroshot import Predictor

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = get_logger("lgeclip.predict")
    if method not in METHOD_DESCRIPTIONS:  # before any study: a wrong option is not a per-study failure
        raise ValueError(f"method must be one of {tuple(METHOD_DESCRIPTIONS)}, got {method!r}")
    predictor = predictor or Predictor.from_run_dir(run, seg_run, landmarks_run)
    if method in ASK_METHODS and getattr(predictor, "zero_shot", True) is None:
        raise ValueError(f"method {method!r} asks in words: it needs a CLIP run, not {predictor.cfg.task!r}")
    rules_obj = load_rules(rules)
    series, skipped = scan_tree(Path(studies))
    rows, failures = [], [(f"file-{stable_hash(str(p))}", why) for p, why in skipped]
    studies = group_studies(series)
    keys = study_keys(studies)  # two studies of one patient: two keys, two output folders
    for uid, ss in sorted(studies.items(), key=lambda kv: keys[kv[0]]):
        key = keys[uid]
        try:
            pred, inputs, sources = predict_study(predictor, ss, rules_obj, with_sources=True, key=key,
                                                  method=method)
        except Exception as e:  # noqa: BLE001 - a batch job records the study and goes on
            reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            reason = scrub(reason, phi_tokens(ss[0].patient_id, ss[0].patient_name, ss[0].birth_date))
            failures.append((key, reason))
            log.warning("%s: skipped (%s)", key, reason)
            continue
        d = out / key
        d.mkdir(exist_ok=True)
        if figures:
            plot_prediction(pred, inputs, d / "prediction.png")
        atomic_write_json(d / "prediction.json", pred)
        if dicom_out:
            from lgeclip.infer.dicom_out import write_dicom_results

            try:
                write_dicom_results(pred, sources, d / "prediction.png" if figures else None, d)
            except Exception as e:  # noqa: BLE001 - the JSON result stands; the DICOM failure is recorded
                failures.append((key, f"DICOM output failed ({type(e).__name__})"))
        rows.append(pred)
        log.info("%s: P(LGE)=%.3f -> %s", key, pred["p_lge"], "LGE" if pred["lge"] else "no LGE")
    atomic_write_text(out / "predictions.csv", csv_text(
        ("patient_key", "p_lge", "lge", "p_lge_all_slices", "n_slices", "n_skipped_slices"),
        [(r["patient_key"], f"{r['p_lge']:.4f}", int(r["lge"]), f"{r['p_lge_all_slices']:.4f}", r["n_slices"],
          sum(s["skipped"] is not None for s in r["slices"])) for r in rows]))
    atomic_write_text(out / "failures.csv", csv_text(("study", "reason"), failures))
    n_slices = sum(r["n_slices"] for r in rows)
    dt = time.perf_counter() - t0
    summary = {"run": str(Path(run).resolve()), "localisation_method": method, "n_predicted": len(rows),
               "n_failed": len(failures),
               "n_lge": sum(r["lge"] for r in rows), "n_slices": n_slices, "seconds": round(dt, 2),
               "seconds_per_study": round(dt / max(len(rows), 1), 3),
               "model": rows[0]["model"] if rows else None}
    atomic_write_json(out / "summary.json", summary)
    return summary
