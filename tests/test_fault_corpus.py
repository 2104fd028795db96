"""Fault corpus (issue 14): phantom studies broken in the ways hospital exports break, ingested as one batch.

Each faulty study must end as a named reason in ``excluded.csv``, every healthy study must be kept, an ingest
interrupted half-way and run again must write exactly what an uninterrupted run writes, and no patient name, ID
or birth date may reach any non-DICOM output or log line."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from lgeclip.io.cohort import patient_key
from lgeclip.io.dicom import group_studies, scan_tree, select_lge_series
from lgeclip.io.ingest import ingest_dicom
from lgeclip.phantom import generate_cohort

FAULTS = ("truncated", "no_spacing", "no_lge_series", "no_report", "lge_free_report", "multi_frame")
KEPT = ("jpeg2000", "copied_twice", "healthy_a", "healthy_b")


def _lge_paths(study_dir: Path) -> list[Path]:
    series, _ = scan_tree(study_dir)
    (study,) = group_studies(series).values()
    chosen, why = select_lge_series(study)
    assert chosen is not None, why
    return [i.path for i in chosen.instances]


def _rewrite(paths: list[Path], fn) -> None:
    for p in paths:
        ds = pydicom.dcmread(p)
        fn(ds)
        ds.save_as(p)


def _without_pixel_spacing(ds) -> None:
    del ds.PixelSpacing


def _multi_frame(ds) -> None:
    ds.NumberOfFrames = 2


def _compress(ds) -> None:
    ds.compress(JPEG2000Lossless)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    generate_cohort(root / "ph", patients=12, seed=5, workers=1)
    with open(root / "ph" / "cohort_truth.csv", newline="") as f:
        truth = list(csv.DictReader(f))
    with open(root / "ph" / "reports.csv", newline="", encoding="utf-8") as f:
        reports = list(csv.DictReader(f))
    clean = ingest_dicom(root / "ph" / "dicom", root / "ph" / "reports.csv", root / "clean")
    ok = sorted({r["patient_key"] for r in csv.DictReader(open(root / "clean" / "manifest.csv", newline=""))})
    rows = [t for t in truth if patient_key(t["patient_id"]) in ok]
    assert clean["n_ingested"] == len(rows) >= len(FAULTS) + len(KEPT), "the phantom corpus is too small"
    role = dict(zip(FAULTS + KEPT, rows, strict=False))
    dicom = root / "ph" / "dicom"
    study = {name: dicom / r["study_folder"] for name, r in role.items()}
    for p in _lge_paths(study["truncated"]):
        p.write_bytes(p.read_bytes()[:300])
    _rewrite(_lge_paths(study["no_spacing"]), _without_pixel_spacing)
    for p in _lge_paths(study["no_lge_series"]):
        p.unlink()
    _rewrite(_lge_paths(study["multi_frame"]), _multi_frame)
    _rewrite(_lge_paths(study["jpeg2000"]), _compress)
    shutil.copytree(study["copied_twice"], dicom / "copied_twice_again")  # the same images under another folder
    os.symlink(dicom, dicom / "loop")  # a link back up the tree
    (dicom / "README.txt").write_text("export notes")
    (dicom / "junk.dcm").write_bytes(b"\x00" * 200)
    # reports re-exported as Windows-1252, semicolon-separated; one report dropped, one without LGE words
    out_rows = []
    for r in reports:
        if r["patient_id"] == role["no_report"]["patient_id"]:
            continue
        text = r["report_text"]
        if r["patient_id"] == role["lge_free_report"]["patient_id"]:
            text = "FINDINGS: Normal biventricular size and function.\nIMPRESSION: Normal study."
        out_rows.append((r["patient_id"], r["accession"], "Referred by Dr Müller (room at 21 °C).\n" + text))
    with open(root / "reports_cp1252.csv", "w", newline="", encoding="cp1252") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["patient_id", "accession", "report_text"])
        w.writerows(out_rows)
    phi = set()
    for ser in scan_tree(root / "ph" / "dicom")[0]:
        phi |= {ser.patient_id, ser.patient_name.split("^")[0], ser.birth_date}
    return {"root": root, "dicom": dicom, "reports": root / "reports_cp1252.csv", "role": role,
            "phi": {t for t in phi if t and len(t) >= 4}}


def _outputs(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file a cohort folder holds."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_fault_is_a_named_reason_and_every_healthy_study_is_kept(corpus, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "cohort"
    s = ingest_dicom(corpus["dicom"], corpus["reports"], out)
    assert s["reports"]["encoding"] == "cp1252" and s["reports"]["delimiter"] == ";"
    key = {name: patient_key(r["patient_id"]) for name, r in corpus["role"].items()}
    kept = {r["patient_key"] for r in csv.DictReader(open(out / "manifest.csv", newline=""))}
    assert {key[n] for n in KEPT} <= kept and not {key[n] for n in FAULTS} & kept
    reasons: dict[str, list[str]] = {}
    for r in csv.DictReader(open(out / "excluded.csv", newline="")):
        reasons.setdefault(r["study"], []).append(r["reason"])
    want = {"truncated": "no LGE short-axis series", "no_spacing": "missing PixelSpacing",
            "no_lge_series": "no LGE short-axis series", "no_report": "no report for this patient",
            "lge_free_report": "report has no LGE sentence", "multi_frame": "multi-frame image"}
    for name, words in want.items():
        assert any(words in why for why in reasons.get(key[name], [])), (name, reasons.get(key[name]))
    file_reasons = {why for k, whys in reasons.items() if k.startswith("file-") for why in whys}
    assert {"not a DICOM file", "folder already scanned through another path (link)",
            "repeated SOP Instance UID (a copy of an image already read)"} <= file_reasons
    # no name, ID or birth date in any output file or log line
    text = " ".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".csv", ".json"))
    logs = caplog.text + " ".join(capfd.readouterr())
    for tok in corpus["phi"]:
        assert tok not in text and tok not in logs, "PHI reached an output"


def test_an_interrupted_ingest_run_again_writes_what_an_uninterrupted_one_writes(corpus, tmp_path, monkeypatch):
    import lgeclip.io.ingest as ingest_mod

    whole = tmp_path / "whole"
    ingest_dicom(corpus["dicom"], corpus["reports"], whole)
    real, calls = ingest_mod._ingest_study, []

    def dies_half_way(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # what Ctrl-C or a kill mid-batch leaves behind
        return real(*args, **kwargs)

    again = tmp_path / "again"
    monkeypatch.setattr(ingest_mod, "_ingest_study", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        ingest_dicom(corpus["dicom"], corpus["reports"], again)
    assert (again / "slices").is_dir() and not (again / "manifest.csv").exists()  # partial, never half-written
    monkeypatch.setattr(ingest_mod, "_ingest_study", real)
    ingest_dicom(corpus["dicom"], corpus["reports"], again)
    strip = {"cohort.json"}  # holds timings
    a = {k: v for k, v in _outputs(whole).items() if k not in strip}
    b = {k: v for k, v in _outputs(again).items() if k not in strip}
    assert a == b
