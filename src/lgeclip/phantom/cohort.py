"""Phantom cohort writer: one DICOM study per patient, free-text reports and ground truth (ARCHITECTURE.md §2).

``write_patient(spec, out)`` writes one study (localizer, cine SAX, long-axis LGE, single-shot LGE, PSIR SAX
stack; no LGE series when the spec says LGE was not performed) plus ``truth/<PatientID>/truth.json`` and
``slices.npz``; ``generate_cohort(out, patients, seed, workers)`` does it for a cohort in parallel and writes
``reports.csv``, ``cohort_truth.csv`` and ``phantom.json``. Every random draw comes from generators seeded by
``(seed, patient index, stream)``, so the output does not depend on ``workers``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lgeclip.phantom.dicomio import NAMES, Image, Series, make_uid, write_series
from lgeclip.phantom.render import Grid, plane_vectors, psir_grid, render_plane, render_sax, slice_ipp
from lgeclip.phantom.scar import aha_segment
from lgeclip.phantom.spec import SLICE_MM, PatientSpec, generate_patient
from lgeclip.utils import atomic_write_json, atomic_write_text

LEVELS = ("basal", "mid", "apical")


def stack_level(k: int, n: int) -> str:
    """Level of slice ``k`` (0 = base) of ``n`` by thirds of the stack."""
    return LEVELS[min(int(3 * (k + 0.5) / n), 2)]


def _fallback_report(facts: dict, rng: np.random.Generator) -> str:
    """Minimal report used only while ``lgeclip.phantom.reports`` does not exist."""
    find = [f"LV ejection fraction {facts['lvef']:.0f}%, LVEDV {facts['lvedv']:.0f} ml."]
    if not facts["lge_performed"]:
        find.append("LGE not performed.")
        imp = "No LGE assessment."
    elif facts["lge"]:
        segs = ", ".join(str(s) for s in facts["segments"]) or "unspecified"
        find.append(f"{facts['transmurality']} late gadolinium enhancement ({facts['pattern']}) in AHA segments "
                    f"{segs}." + (" Microvascular obstruction." if facts["mvo"] else ""))
        imp = "Myocardial scar present."
    else:
        find.append("No late gadolinium enhancement.")
        imp = "No myocardial scar."
    return (f"CARDIAC MRI\nPatient: {facts['patient_name']}\nIndication: {facts['indication']}\n"
            f"Findings: {' '.join(find)}\nImpression: {imp}")


def _report_fn():
    try:
        from lgeclip.phantom.reports import write_report
    except ImportError:
        return _fallback_report
    return write_report


def _sub_grid(spec: PatientSpec, cols: int) -> Grid:
    """A coarser grid over the same field of view as the PSIR stack (cine / single-shot series)."""
    g = psir_grid(spec)
    sp = g.spacing * g.cols / cols
    rows = int(min(256, 8 * round(g.rows * g.spacing / sp / 8)))
    return Grid(rows, cols, sp, (g.lv_px[0] * g.spacing / sp, g.lv_px[1] * g.spacing / sp))


def _order(spec: PatientSpec, n: int, rng: np.random.Generator) -> list[int]:
    o = spec.geometry.order
    return list(range(n)) if o == "base-apex" else (list(range(n))[::-1] if o == "apex-base"
                                                     else [int(i) for i in rng.permutation(n)])


def _series(spec: PatientSpec, key: str, kind: str, number: int, rng: np.random.Generator, v: str = "",
            suffix: str = "", ti: float | None = None, thickness: float = SLICE_MM,
            spacing_between: float | None = None) -> Series:
    names, _, seq, scan = NAMES[spec.vendor][kind]
    desc = str(rng.choice(names)).format(v=v) + suffix
    protocol = "CMR VIABILITY" if spec.vendor == "GE" else (("WIP " if spec.vendor == "PHILIPS" else "") + desc)
    return Series(key=key, description=desc, protocol=protocol, number=number, sequence_name=seq,
                  scanning_sequence=scan, inversion_time=ti, thickness=thickness, spacing_between=spacing_between,
                  uid=make_uid(spec, "series", key))


def _plane_series(spec, rng, rng_img, number) -> list[Series]:
    g = spec.geometry
    u, a3, s3 = (np.asarray(x) for x in (g.u, g.ant, g.sep))
    h = spec.heart
    center = np.asarray(g.base_center) + 0.45 * h.length * u
    out = []
    loc = _series(spec, "loc", "loc", number(), rng, thickness=8.0)
    for j, (rd, cd) in enumerate([((1, 0, 0), (0, 1, 0)), ((1, 0, 0), (0, 0, -1)), ((0, 1, 0), (0, 0, -1))]):
        rd, cd, sp = np.array(rd, float), np.array(cd, float), 1.6
        img = render_plane(spec, center - 128 * sp * (rd + cd), rd, cd, 256, 256, sp, rng_img)
        loc.images.append(Image(img, center - 128 * sp * (rd + cd), rd, cd, sp, "mag", NAMES[spec.vendor]["loc"][1],
                                extra={"ImageComments": ["TRA", "COR", "SAG"][j]}))
    out.append(loc)
    if spec.lge_performed:
        for view, rd in (("4CH", s3), ("2CH", a3)):
            s = _series(spec, f"lax{view}", "lax", number(), rng, v=view, ti=spec.inversion_time)
            cd, sp = -u, g.spacing
            org = center - 128 * sp * (rd + cd)
            img = render_plane(spec, org, rd, cd, 256, 256, sp, rng_img, contrast="psir") - 0.1
            s.images.append(Image(img, org, rd, cd, sp, "psir", NAMES[spec.vendor]["lax"][1], trigger_time=450.0))
            out.append(s)
    return out


def write_patient(spec: PatientSpec, out_root: str | Path) -> dict:
    """Write one study + truth for ``spec`` under ``out_root``; returns a summary row (no pixel data)."""
    t0 = time.perf_counter()
    out_root = Path(out_root)
    rng = np.random.default_rng([spec.seed, spec.index, 2])  # names, numbering, layout
    rng_img = np.random.default_rng([spec.seed, spec.index, 3])  # noise / texture
    study_folder = rng.bytes(8).hex()
    study_dir = out_root / "dicom" / study_folder
    study_uid, frame_uid = make_uid(spec, "study"), make_uid(spec, "frame")
    subfolders = spec.vendor != "SIEMENS" and rng.random() < 0.5
    counter = iter(range(1, 100))
    step = {"SIEMENS": 1, "GE": 1, "PHILIPS": 100}[spec.vendor]
    number = lambda: next(counter) * step + (1 if step == 100 else 0)  # noqa: E731
    row_dir, col_dir, _ = plane_vectors(spec)
    z = spec.slice_z()
    n = len(z)
    series = _plane_series(spec, rng, rng_img, number)
    cine = _series(spec, "cine", "cine", number(), rng, thickness=8.0, spacing_between=None)
    cg = _sub_grid(spec, int(rng.choice([192, 208, 224])))
    for zc in (z[1], z[n // 2], z[-2]):
        for ph, sys_f in enumerate((0.0, 0.6, 1.0, 0.5)):
            img = render_sax(spec, float(zc), cg, rng_img, "ssfp", systole=sys_f)[0]
            cine.images.append(Image(img, slice_ipp(spec, cg, float(zc)), row_dir, col_dir, cg.spacing, "mag",
                                     NAMES[spec.vendor]["cine"][1], trigger_time=180.0 * ph))
    series.insert(1, cine)
    truth_slices, masks, psir_sops = [], {}, []
    psir_uid = None
    if spec.lge_performed:
        ss = _series(spec, "ss", "ss", number(), rng, ti=spec.inversion_time, spacing_between=SLICE_MM)
        sg = _sub_grid(spec, 192)
        for k in _order(spec, n, rng):
            img = render_sax(spec, float(z[k]), sg, rng_img, "magnitude")[0]
            ss.images.append(Image(img, slice_ipp(spec, sg, float(z[k])), row_dir, col_dir, sg.spacing, "mag",
                                   NAMES[spec.vendor]["ss"][1], trigger_time=400.0))
        series.append(ss)
        grid = psir_grid(spec)
        psir_imgs, mag_imgs = [], []
        for k in range(n):
            img, tr = render_sax(spec, float(z[k]), grid, rng_img, "psir", with_truth=True)
            ipp = slice_ipp(spec, grid, float(z[k]))
            mag = np.hypot(np.abs(img), rng_img.normal(0, spec.body.noise, img.shape)).astype(np.float32)
            it_psir = NAMES[spec.vendor]["psir"][1]
            if spec.vendor == "SIEMENS" and spec.variant == 1:
                it_psir = "DERIVED\\PRIMARY\\R\\NORM\\DIS2D"
            if spec.vendor == "GE" and spec.variant == 2:
                it_psir = "ORIGINAL\\PRIMARY\\OTHER\\REAL"
            psir_imgs.append(Image(img, ipp, row_dir, col_dir, grid.spacing, "psir", it_psir, trigger_time=450.0))
            it_mag = "ORIGINAL\\PRIMARY\\OTHER\\MAGNITUDE" if spec.vendor == "GE" else NAMES[spec.vendor]["mag"][1]
            mag_imgs.append(Image(mag, ipp, row_dir, col_dir, grid.spacing, "mag", it_mag, trigger_time=450.0))
            masks[k] = tr
        order = _order(spec, n, rng)
        psir = _series(spec, "psir", "psir", 0, rng, ti=spec.inversion_time, spacing_between=SLICE_MM)
        mixed = (spec.vendor == "PHILIPS" and spec.variant != 1) or (spec.vendor == "SIEMENS" and spec.variant == 2) \
            or (spec.vendor == "GE" and spec.variant == 2)
        separate_mag = (spec.vendor == "SIEMENS" and spec.variant == 0) or (spec.vendor == "GE" and spec.variant == 1)
        if separate_mag:
            mag_s = _series(spec, "mag", "mag", number(), rng, ti=spec.inversion_time, spacing_between=SLICE_MM)
            base = psir.description
            mag_s.description = base + "_MAG" if spec.vendor == "SIEMENS" else "MDE SAX"
            mag_s.images = [mag_imgs[k] for k in order]
            series.append(mag_s)
            if spec.vendor == "SIEMENS":
                psir.description = base + "_PSIR"
        psir.number = number()
        if mixed:
            interleave = rng.random() < 0.5
            pairs = [(mag_imgs[k], psir_imgs[k]) for k in order]
            psir.images = [im for p in pairs for im in p] if interleave else \
                [p[0] for p in pairs] + [p[1] for p in pairs]
        else:
            psir.images = [psir_imgs[k] for k in order]
        series.append(psir)
        psir_uid = psir.uid
    for i, s in enumerate(series):
        s.order = i
        write_series(spec, study_dir, study_uid, frame_uid, s, rng, subfolders)
    if psir_uid is not None:
        psir = series[-1]
        sop_of = {id(im): sop for im, sop in zip(psir.images, psir.sop_uids, strict=True)}
        psir_sops = [sop_of[id(im)] for im in psir_imgs]
    truth_dir = out_root / "truth" / spec.patient_id
    npz: dict[str, np.ndarray] = {}
    h = spec.heart
    for k in range(len(psir_sops)):
        tr, key, level = masks[k], f"s{k:02d}", stack_level(k, n)
        for m in ("myocardium", "blood_pool", "rv", "scar", "mvo"):
            npz[f"{key}_{m}"] = tr[m]
        segs = sorted({int(x) for x in aha_segment(tr["alpha_deg"][tr["scar"] > 0], h.alpha_ant,
                                                   h.alpha_ant + h.rvip_span, level)})
        sp = psir_grid(spec).spacing
        truth_slices.append({
            "sop_uid": psir_sops[k], "level": level, "slice_location": round(float(slice_ipp(spec, psir_grid(spec),
                                                                                           float(z[k])) @ np.cross(
                row_dir, col_dir)), 6), "z_from_base_mm": float(z[k]), "has_scar": bool(tr["scar"].any()),
            "scar_segments": segs, "rvip_px": tr["rvip_px"], "rvip_mm": [[p[0] * sp, p[1] * sp] for p in tr["rvip_px"]],
            "lv_center_px": tr["lv_center_px"], "npz_key": key})
    sc = spec.scar
    truth = {"patient_id": spec.patient_id, "study_uid": study_uid, "psir_series_uid": psir_uid,
             "scar": sc is not None, "scar_pattern": sc.pattern if sc else None,
             "scar_segments": spec.facts["segments"], "scar_territory": sc.territory if sc else None,
             "scar_hidden": sc.hidden if sc else None, "scar_imaged": any(s["has_scar"] for s in truth_slices),
             "mvo": bool(sc.mvo) if sc else False, "lge_performed": spec.lge_performed, "vendor": spec.vendor,
             "pixel_spacing_mm": psir_grid(spec).spacing, "slice_mm": SLICE_MM,
             "aha_rule": "basal/mid 60deg sectors from the anterior RVIP through the septum; apical 90deg centred "
                         "on the RVIP bisector", "slices": truth_slices}
    atomic_write_json(truth_dir / "truth.json", truth)
    buf = io.BytesIO()
    np.savez_compressed(buf, **npz)
    from lgeclip.utils import atomic_write_bytes

    atomic_write_bytes(truth_dir / "slices.npz", buf.getvalue())
    report = _report_fn()(dict(spec.facts), np.random.default_rng([spec.seed, spec.index, 1]))
    return {"index": spec.index, "patient_id": spec.patient_id, "accession": spec.accession, "report_text": report,
            "study_folder": study_folder, "scar": sc is not None, "pattern": sc.pattern if sc else "",
            "hidden": sc.hidden if sc else "", "vendor": spec.vendor,
            "n_files": sum(len(s.images) for s in series), "seconds": time.perf_counter() - t0}


def _one(args: tuple[int, int, str, float]) -> dict:
    seed, index, out, scar_rate = args
    return write_patient(generate_patient(seed, index, scar_rate=scar_rate), out)


def _csv(rows: list[dict], cols: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def generate_cohort(out: str | Path, patients: int = 200, seed: int = 0, workers: int = 1,
                    scar_rate: float = 0.4) -> dict:
    """Write a phantom cohort to ``out`` (see module docstring); returns a JSON-able summary (no PHI)."""
    out = Path(out)
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    for sub in ("dicom", "truth"):
        if (out / sub).exists() and any((out / sub).iterdir()):
            raise FileExistsError(f"{out / sub} is not empty: choose a new output folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(int(seed), i, str(out), float(scar_rate)) for i in range(patients)]
    if workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as ex:
            rows = list(ex.map(_one, jobs, chunksize=max(1, patients // (8 * workers))))
    else:
        rows = [_one(j) for j in jobs]
    rows.sort(key=lambda r: r["index"])
    atomic_write_text(out / "reports.csv", _csv(rows, ["patient_id", "accession", "report_text"]))
    atomic_write_text(out / "cohort_truth.csv", _csv(rows, ["patient_id", "study_folder", "scar", "pattern",
                                                            "hidden", "vendor"]))
    wall = time.perf_counter() - t0
    per = [r["seconds"] for r in rows]
    summary = {
        "out": str(out), "seed": int(seed), "patients": patients, "workers": workers,
        "scar": sum(r["scar"] for r in rows), "scar_hidden": sum(bool(r["hidden"]) for r in rows),
        "patterns": dict(Counter(r["pattern"] or "none" for r in rows)),
        "vendors": dict(Counter(r["vendor"] for r in rows)), "dicom_files": sum(r["n_files"] for r in rows),
        "seconds": round(wall, 2), "seconds_per_patient_mean": round(float(np.mean(per)), 3),
        "report_writer": "lgeclip.phantom.reports" if _report_fn() is not _fallback_report else "fallback",
    }
    atomic_write_json(out / "phantom.json", summary)
    return json.loads(json.dumps(summary))
