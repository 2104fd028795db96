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

from lgeclip.io.cohort import patient_key, patient_of
from lgeclip.io.dicom import group_studies, scan_tree, select_lge_series
from lgeclip.io.ingest import ingest_dicom
from lgeclip.io.splits import read_splits
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
    followup = _second_study(study["healthy_b"], dicom / "healthy_b_followup")  # same patient, a later study
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
        if r["patient_id"] == role["healthy_b"]["patient_id"]:
            out_rows.append((r["patient_id"], followup, "FINDINGS: Follow-up study.\nIMPRESSION: No late "
                                                          "gadolinium enhancement."))
    with open(root / "reports_cp1252.csv", "w", newline="", encoding="cp1252") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["patient_id", "accession", "report_text"])
        w.writerows(out_rows)
    phi = set()
    for ser in scan_tree(root / "ph" / "dicom")[0]:
        phi |= {ser.patient_id, ser.patient_name.split("^")[0], ser.birth_date}
    return {"root": root, "dicom": dicom, "reports": root / "reports_cp1252.csv", "role": role,
            "phi": {t for t in phi if t and len(t) >= 4}}


def _second_study(src: Path, dst: Path) -> str:
    """Copy a study as a later study of the same patient (new Study/Series/SOP UIDs, new accession); returns the
    accession."""
    from pydicom.uid import generate_uid

    study_uid, series_uids, accession = generate_uid(), {}, "FU" + generate_uid()[-8:]
    for p in sorted(src.rglob("*")):
        if not p.is_file():
            continue
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            ds = pydicom.dcmread(p)
        except Exception:  # noqa: BLE001 - non-DICOM files are copied as they are
            shutil.copy(p, out)
            continue
        ds.StudyInstanceUID, ds.AccessionNumber = study_uid, accession
        ds.SeriesInstanceUID = series_uids.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(out)
    return accession


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
    cases = {r["patient_key"]: r["label"] for r in csv.DictReader(open(out / "manifest.csv", newline=""))}
    kept = {patient_of(k) for k in cases}
    assert {key[n] for n in KEPT} <= kept and not {key[n] for n in FAULTS} & kept
    # two studies of one patient: two cases with their own reports, dealt into one fold
    both = sorted(k for k in cases if patient_of(k) == key["healthy_b"])
    assert len(both) == 2 and all(k.startswith(key["healthy_b"] + "~") for k in both)
    assert "negative" in {cases[k] for k in both}  # the follow-up report's label, not the first study's
    folds = read_splits(out)["patients"]
    assert folds[both[0]]["fold"] == folds[both[1]]["fold"]
    reasons: dict[str, list[str]] = {}
    for r in csv.DictReader(open(out / "excluded.csv", newline="")):
        reasons.setdefault(patient_of(r["study"]), []).append(r["reason"])
    want = {"truncated": "no LGE short-axis series", "no_spacing": "missing PixelSpacing",
            "no_lge_series": "no LGE short-axis series", "no_report": "no report for this patient",
            "lge_free_report": "report has no LGE sentence", "multi_frame": "multi-frame image"}
    for name, words in want.items():
        assert any(words in why for why in reasons.get(key[name], [])), (name, reasons.get(key[name]))
    file_reasons = {why for k, whys in reasons.items() if k.startswith("file-") for why in whys}
    assert {"not a DICOM file", "folder already scanned through another path (link)",
            "repeated SOP Instance UID (a copy of an image already read)",
            "truncated DICOM file (the data set ends before its UIDs)"} <= file_reasons
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


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A tiny trained run and its predictor, with a stand-in anatomy (a ring at the image centre)."""
    from _clip_fixtures import RingAnatomy, train_tiny_run

    from lgeclip.infer.zeroshot import Predictor

    run = train_tiny_run(tmp_path_factory.mktemp("fault_run"))["run"]
    pred = Predictor.from_run_dir(run, with_anatomy=False, device="cpu")
    pred.anatomy = RingAnatomy()
    return run, pred


@pytest.fixture(scope="module")
def predicted(corpus, predictor, tmp_path_factory):
    """``predict --dicom-out`` over the whole corpus, with everything it logged."""
    from lgeclip.infer.predict import predict_studies

    run, pred = predictor
    out = tmp_path_factory.mktemp("fault_pred") / "pred"
    from lgeclip.utils import get_logger

    log = get_logger("lgeclip.predict")  # its own console handler first; ours sees the unwrapped lines
    handler = logging.Handler()
    lines: list[str] = []
    handler.emit = lambda rec: lines.append(rec.getMessage())
    log.addHandler(handler)
    try:
        predict_studies(corpus["dicom"], run, out, predictor=pred, dicom_out=True)
    finally:
        log.removeHandler(handler)
    return out, lines


def test_predict_names_each_fault_scores_every_readable_study_and_writes_no_phi(corpus, predicted, capfd):
    out, lines = predicted
    key = {name: patient_key(r["patient_id"]) for name, r in corpus["role"].items()}
    fails: dict[str, list[str]] = {}
    for r in csv.DictReader(open(out / "failures.csv", newline="")):
        fails.setdefault(patient_of(r["study"]), []).append(r["reason"])
    want = {"truncated": "no LGE short-axis series", "no_spacing": "missing PixelSpacing",
            "no_lge_series": "no LGE short-axis series", "multi_frame": "multi-frame image"}
    for name, words in want.items():
        assert any(words in why for why in fails.get(key[name], [])), (name, fails.get(key[name]))
    file_reasons = {why for k, whys in fails.items() if k.startswith("file-") for why in whys}
    assert {"not a DICOM file", "folder already scanned through another path (link)"} <= file_reasons
    # predict reads no report: the two report faults are scored like every healthy study; the follow-up study of
    # healthy_b is a study of its own (its own folder, SR and Secondary Capture)
    done = {p.parent.name for p in out.glob("*/prediction.json")}
    scored = {patient_of(k) for k in done}
    assert {key[n] for n in (*KEPT, "no_report", "lge_free_report")} <= scored and not {key[n] for n in want} & scored
    assert sum(patient_of(k) == key["healthy_b"] for k in done) == 2
    for k in done:
        assert (out / k / "lgeclip_sr.dcm").is_file() and (out / k / "lgeclip_sc.dcm").is_file()
    text = " ".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".csv", ".json"))
    logs = " ".join(lines) + " ".join(capfd.readouterr())
    assert any("skipped" in ln for ln in lines)  # the log was captured
    for tok in corpus["phi"]:
        assert tok not in text and tok not in logs, "PHI reached a non-DICOM output"


def test_an_interrupted_predict_run_again_writes_what_an_uninterrupted_one_writes(corpus, predictor, predicted,
                                                                                  tmp_path, monkeypatch):
    import lgeclip.infer.predict as predict_mod

    run, pred = predictor
    real, calls = predict_mod.predict_study, []

    def dies_half_way(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    again = tmp_path / "again"
    monkeypatch.setattr(predict_mod, "predict_study", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        predict_mod.predict_studies(corpus["dicom"], run, again, predictor=pred, dicom_out=True)
    assert not (again / "predictions.csv").exists()
    monkeypatch.setattr(predict_mod, "predict_study", real)
    predict_mod.predict_studies(corpus["dicom"], run, again, predictor=pred, dicom_out=True)
    whole, _ = predicted

    def plain(folder):  # DICOM results carry new UIDs on every run by design; summary.json holds timings
        return {k: v for k, v in _outputs(folder).items() if not k.endswith(".dcm") and k != "summary.json"}

    assert plain(again) == plain(whole) and len(plain(whole)) > 10
    assert {k for k in _outputs(again) if k.endswith(".dcm")} == {k for k in _outputs(whole) if k.endswith(".dcm")}
