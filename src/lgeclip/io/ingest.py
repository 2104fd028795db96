"""DICOM studies + free-text reports -> cohort folder (manifest, slice arrays, excluded.csv, cohort.json).

Bad input never aborts a run: unreadable files, studies without an LGE series / PixelSpacing / report / LGE
sentence land in ``excluded.csv`` with their reason. The ``study`` column there is the case key (the patient key;
``<patient key>~<study hash>`` for each study of a patient with several, which stay separate cases in one split
fold; or a hash of the StudyInstanceUID / file path): no name, ID or birth date reaches any output or log line.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lgeclip.io.cohort import SliceRecord, patient_of, save_slice, write_excluded, write_manifest
from lgeclip.io.dicom import (
    DEFAULT_RULES_PATH,
    SeriesInfo,
    choose_levels,
    group_studies,
    load_rules,
    order_slices,
    read_pixels,
    scan_tree,
    select_lge_series,
    study_keys,
)
from lgeclip.io.splits import ensure_splits, splits_path
from lgeclip.utils import atomic_write_json, get_logger, stable_hash

TRUTH_MASKS = ("myocardium", "blood_pool", "rv", "scar", "mvo")


REPORT_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # utf-8-sig reads plain UTF-8 too; latin-1 reads any byte
REPORT_DELIMITERS = ",;\t|"


def read_reports_info(path: str | Path, id_column: str = "patient_id", accession_column: str = "accession",
                      text_column: str = "report_text") -> tuple[dict[str, list[tuple[str, str]]], dict]:
    """A reports CSV -> ``({patient_id: [(accession, text), ...]}, info)``.

    Hospital exports come in UTF-8 (with or without BOM) or Windows-1252 / Latin-1, comma-, semicolon- or
    tab-separated: the encoding is the first of ``REPORT_ENCODINGS`` that decodes the whole file, the delimiter
    is sniffed. ``info`` says which (``encoding``, ``delimiter``), how many rows were read and how many were left
    out (``skipped_rows``: row number and reason, e.g. no patient id; no row content, which may hold PHI). A file
    without the id or text column raises ``ValueError`` naming the file and the columns it has."""
    path = Path(path)
    raw = path.read_bytes()
    for encoding in REPORT_ENCODINGS:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    head = "\n".join(text.splitlines()[:20])
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=REPORT_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = columns
    missing = [c for c in (id_column, text_column) if c not in columns]
    if missing:
        raise ValueError(f"{path.name}: no column {', '.join(map(repr, missing))} (columns: {columns}; encoding "
                         f"{encoding}, delimiter {delimiter!r}); name them with the id/text column options")
    out: dict[str, list[tuple[str, str]]] = {}
    skipped: list[tuple[int, str]] = []
    n_rows = 0
    for n_rows, row in enumerate(reader, start=1):
        if None in row:  # more fields than the header: a broken quote or delimiter in the text
            skipped.append((n_rows, "more fields than the header"))
            continue
        pid = (row.get(id_column) or "").strip()
        if not pid:
            skipped.append((n_rows, "no patient id"))
            continue
        out.setdefault(pid, []).append(((row.get(accession_column) or "").strip(), row.get(text_column) or ""))
    info = {"encoding": encoding, "delimiter": delimiter, "n_rows": n_rows, "n_patients": len(out),
            "skipped_rows": [{"row": r, "reason": why} for r, why in skipped]}
    return out, info


def phi_tokens(patient_id: str, patient_name: str = "", birth_date: str = "") -> list[str]:
    """Strings that must never be written: the ID, name parts (>= 2 letters) and birth date variants."""
    toks = {patient_id.strip()} if patient_id.strip() else set()
    toks |= {t for t in re.split(r"[\^\s,]+", patient_name) if len(t) >= 2}
    b = re.sub(r"\D", "", birth_date)
    if len(b) == 8:
        y, m, d = b[:4], b[4:6], b[6:]
        toks |= {b, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{y}/{m}/{d}"}
    return sorted(toks, key=len, reverse=True)


def contains_phi(text: str, tokens: list[str]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(t)}(?![A-Za-z0-9])", text, re.IGNORECASE) for t in tokens)


def scrub(text: str, tokens: list[str]) -> str:
    """Replace any PHI token in free text (reasons, series descriptions) by ``[x]``."""
    for t in tokens:
        text = re.sub(re.escape(t), "[x]", text, flags=re.IGNORECASE)
    return text


def _pick_report(reports: list[tuple[str, str]], accession: str, several_studies: bool = False) -> str | None:
    """The report with the study's accession, else the patient's first report; None for a patient with several
    studies when the accession picks no report (which study a report describes is then unknown)."""
    for acc, text in reports:
        if accession and acc == accession:
            return text
    return None if several_studies else reports[0][1]


def _load_truth(truth_dir: Path | None, patient_id: str) -> tuple[dict | None, dict | None]:
    if truth_dir is None:
        return None, None
    d = Path(truth_dir) / patient_id
    if not (d / "truth.json").exists():
        return None, None
    meta = json.loads((d / "truth.json").read_text())
    arrays = {}
    if (d / "slices.npz").exists():
        with np.load(d / "slices.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    return meta, arrays


def _truth_for(sop: str, meta: dict | None, arrays: dict | None) -> tuple[dict, int | None]:
    if not meta:
        return {}, None
    sl = next((s for s in meta.get("slices", []) if s.get("sop_uid") == sop), None)
    if sl is None:
        return {}, None
    key = sl.get("npz_key", sop)
    masks = {m: arrays[f"{key}_{m}"].astype(np.uint8) for m in TRUTH_MASKS if f"{key}_{m}" in (arrays or {})}
    rv = sl.get("rvip_px")
    masks["rvip"] = np.asarray(rv, np.float32) if rv is not None else np.full((2, 2), np.nan, np.float32)
    return masks, int(bool(sl.get("has_scar"))) if "has_scar" in sl else None


def _ingest_study(series: list[SeriesInfo], key: str, reports: dict, out: Path, rules, truth: Path | None,
                  n_levels: int, report_fns) -> tuple[list[SliceRecord], list[tuple[str, str]], dict]:
    """One study (cohort case ``key``) -> (records, excluded rows, info). Raises nothing for bad input."""
    extract_lge_sentences, lge_status = report_fns
    first = series[0]
    pid = first.patient_id
    toks = phi_tokens(pid, first.patient_name, first.birth_date)
    info: dict = {"study": key}

    def excl(reason: str) -> tuple[list, list, dict]:
        info["excluded"] = scrub(reason, toks)
        return [], [(key, info["excluded"])], info

    if not pid:
        return excl("no PatientID in DICOM header")
    chosen, why = select_lge_series(series, rules)
    info["selection"] = scrub(why, toks)
    if chosen is None:
        return excl(why)
    info["series_uid_hash"] = stable_hash(chosen.series_uid)
    if pid not in reports:
        return excl("no report for this patient")
    text = _pick_report(reports[pid], chosen.accession, several_studies=key != patient_of(key))
    if text is None:
        return excl("several studies of this patient and no report with this study's accession")
    sentences = [s for s in extract_lge_sentences(text) if not contains_phi(s, toks)]
    if not sentences:
        return excl("report has no LGE sentence (after PHI scrubbing)")
    label = lge_status(text)
    ordered, note = order_slices(chosen, rules.position_tol_mm)
    info["order"] = note
    images: dict[str, tuple[np.ndarray, tuple[float, float] | None]] = {}
    rows: list[tuple[str, str]] = []
    good = []
    for inst in ordered:  # pixel check on the whole stack: a truncated file drops out, the stack stays ordered
        try:
            images[inst.sop_uid] = read_pixels(inst.path)
            good.append(inst)
        except ValueError as e:  # read_pixels' own reasons (they name the problem, never a path or a name)
            rows.append((key, f"slice dropped: {e}"))
        except Exception as e:
            rows.append((key, f"slice dropped: unreadable pixel data ({type(e).__name__})"))
    if len(good) < rules.min_slices:
        first = f" ({rows[0][1].removeprefix('slice dropped: ')})" if rows else ""
        return excl(f"only {len(good)} readable slices in the LGE series{first}")
    spacings = [images[i.sop_uid][1] for i in good]
    if any(sp is None for sp in spacings):
        return excl("missing PixelSpacing in the LGE series")
    meta, arrays = _load_truth(truth, pid)
    if truth is not None and meta is None:
        rows.append((key, "no truth for this patient (ingested without masks)"))
    records = []
    for idx, level in choose_levels(len(good), n_levels):
        inst = good[idx]
        img, sp = images[inst.sop_uid]
        masks, scar_truth = _truth_for(inst.sop_uid, meta, arrays)
        rel = f"slices/{key}/{idx}.npz"
        save_slice(out / rel, img, sp, **masks)
        records.append(SliceRecord(
            patient_key=key, level=level, slice_index=idx, n_slices=len(good), image_path=rel, spacing_mm=sp,
            sentences=sentences, label=label, source="dicom", has_masks=any(m in masks for m in TRUTH_MASKS),
            scar_truth=scar_truth, scar_pattern=str((meta or {}).get("scar_pattern") or "")))
    info.update(n_slices=len(good), label=label, levels=[r.level for r in records])
    return records, [(k, scrub(r, toks)) for k, r in rows], info


def ingest_dicom(dicom_root: str | Path, reports_csv: str | Path, out: str | Path, rules=None,
                 truth: str | Path | None = None, n_levels: int = 3, report_columns: dict | None = None) -> dict:
    """Ingest a DICOM tree + reports.csv into ``out`` (see module docstring); returns the cohort summary.
    ``report_columns``: ``read_reports_info`` column names (id_column, accession_column, text_column)."""
    from lgeclip.report import extract_lge_sentences, lge_status

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = get_logger("lgeclip.ingest")
    rules_obj = load_rules(rules)
    root = Path(dicom_root)
    series, skipped = scan_tree(root)
    t_scan = time.perf_counter() - t0
    excluded = [("file-" + stable_hash(str(Path(p).relative_to(root))), why) for p, why in skipped]
    reports, report_info = read_reports_info(reports_csv, **(report_columns or {}))
    excluded += [(f"reports-row-{r['row']}", f"report row not read: {r['reason']}")
                 for r in report_info["skipped_rows"]]
    studies = group_studies(series)
    keys = study_keys(studies)  # two studies of one patient stay two cases (one split fold: io.splits)
    records: list[SliceRecord] = []
    infos: dict[str, dict] = {}
    console = Console(stderr=True)
    with Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("studies", total=len(studies))
        for study_uid, ss in studies.items():
            key = keys[study_uid]
            try:
                recs, rows, info = _ingest_study(ss, key, reports, out, rules_obj, truth and Path(truth), n_levels,
                                                 (extract_lge_sentences, lge_status))
            except Exception as e:  # a bug on one odd study must not lose the cohort
                recs, rows, info = [], [(key, f"ingest error ({type(e).__name__})")], {"study": key}
            records += recs
            excluded += rows
            infos[key] = info
            bar.advance(task)
    write_manifest(out, records)
    write_excluded(out, excluded)
    splits = ensure_splits(out)  # the cohort's one patient split, read by every later stage
    n_ok = len({r.patient_key for r in records})
    dt = time.perf_counter() - t0
    summary = {
        "source": "dicom", "n_studies": len(studies), "n_ingested": n_ok, "n_excluded_studies": len(studies) - n_ok,
        "n_patients": len({patient_of(r.patient_key) for r in records}),
        "n_slices": len(records), "n_skipped_files": len(skipped), "n_excluded_rows": len(excluded),
        "labels": {k: len({r.patient_key for r in records if r.label == k}) for k in ("positive", "negative",
                                                                                       "unknown")},
        "n_with_masks": sum(r.has_masks for r in records),
        "timings_s": {"scan": round(t_scan, 3), "total": round(dt, 3),
                      "per_study": round(dt / max(len(studies), 1), 4)},
        "settings": {"n_levels": n_levels, "rules": str(rules) if rules else f"defaults ({DEFAULT_RULES_PATH.name})",
                     "truth": truth is not None},
        "splits": {"file": str(splits_path(out)), "n_folds": splits["n_folds"], "seed": splits["seed"]},
        "reports": {k: report_info[k] for k in ("encoding", "delimiter", "n_rows", "n_patients")}
        | {"n_skipped_rows": len(report_info["skipped_rows"])},
        "studies": infos,
    }
    atomic_write_json(out / "cohort.json", summary)
    _print_summary(console, summary)
    log.info("ingest: %d/%d studies -> %d slices, %d excluded rows, %.1f s", n_ok, len(studies), len(records),
             len(excluded), dt)
    return {k: v for k, v in summary.items() if k != "studies"}


def _print_summary(console: Console, s: dict) -> None:
    t = Table(title="ingest summary")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("n_studies", "n_ingested", "n_excluded_studies", "n_slices", "n_skipped_files", "n_with_masks"):
        t.add_row(k, str(s[k]))
    for k, v in s.get("labels", {}).items():
        t.add_row(f"label {k}", str(v))
    if "reports" in s:
        r = s["reports"]
        t.add_row(f"report rows ({r['encoding']}, {r['delimiter']!r}-separated)", str(r["n_rows"]))
        t.add_row("report rows not read", str(r["n_skipped_rows"]))
    t.add_row("seconds / study", f"{s['timings_s']['per_study']:.3f}")
    console.print(t)
