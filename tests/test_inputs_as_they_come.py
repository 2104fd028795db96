"""Inputs as hospitals export them: report CSVs in other encodings / delimiters / column names, DICOM trees with
link loops, repeated links and copies of the same image (issue 14, item 2)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from dicom_factory import write_stack

from lgeclip.io.dicom import group_studies, scan_tree, select_lge_series
from lgeclip.io.ingest import read_reports_info

ROWS = [("PT-1", "A1", "Mme Müller, café au lait: no late gadolinium enhancement. T = 37 °C."),
        ("PT-2", "A2", "Subendocardial LGE of the basal inferior wall.")]


def _write(path, rows, encoding, delimiter=",", header=("patient_id", "accession", "report_text")):
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


@pytest.mark.parametrize(("encoding", "delimiter", "want"), [
    ("utf-8", ",", "utf-8-sig"), ("utf-8-sig", ";", "utf-8-sig"), ("cp1252", ";", "cp1252"),
    ("latin-1", "\t", "cp1252"),  # these characters are the same bytes in both: read as cp1252
])
def test_reports_in_any_common_encoding_and_delimiter(tmp_path, encoding, delimiter, want):
    _write(tmp_path / "r.csv", ROWS, encoding, delimiter)
    reports, info = read_reports_info(tmp_path / "r.csv")
    assert info["encoding"] == want and info["delimiter"] == delimiter and info["n_rows"] == 2
    assert reports["PT-1"] == [("A1", ROWS[0][2])]  # "Müller", "café", "°" survive
    assert reports["PT-2"][0][1].startswith("Subendocardial")


def test_report_columns_can_be_named_and_bad_rows_are_reasons_not_tracebacks(tmp_path):
    _write(tmp_path / "r.csv", [("PT-1", "x", "No LGE."), ("", "y", "orphan text"), ("PT-2", "z", "LGE.")],
           "utf-8", header=("MRN", "Acc", "Report"))
    with pytest.raises(ValueError, match=r"r.csv: no column 'patient_id'.*columns: \['MRN', 'Acc', 'Report'\]"):
        read_reports_info(tmp_path / "r.csv")
    reports, info = read_reports_info(tmp_path / "r.csv", id_column="MRN", accession_column="Acc",
                                      text_column="Report")
    assert set(reports) == {"PT-1", "PT-2"} and info["skipped_rows"] == [{"row": 2, "reason": "no patient id"}]
    assert "orphan" not in str(info)  # reasons never carry row content


def test_scan_follows_no_link_twice_and_drops_copies(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "dicom"
    stack = write_stack(root / "p1", rng, description="PSIR", series_number=3, n_slices=8,
                        image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="P1", study_uid="1.2.3.1")
    write_stack(root / "p2", rng, description="PSIR", series_number=3, n_slices=8,
                image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="P2", study_uid="1.2.3.2")
    os.symlink(root, root / "p1" / "loop")  # a link back up the tree
    os.symlink(root / "p2", root / "p2_again")  # a second path to the same study
    first = sorted((root / "p1").glob("*"))[0]
    (root / "p1" / "copy_of_first").write_bytes(first.read_bytes())  # the same image exported twice
    series, skipped = scan_tree(root)
    studies = group_studies(series)
    assert len(studies) == 2 and all(s.n_images == 8 for s in series)
    reasons = {str(p.relative_to(root)): why for p, why in skipped}
    assert reasons["p1/loop"] == "folder already scanned through another path (link)"
    assert reasons["p2_again"] == "folder already scanned through another path (link)"
    assert reasons["p1/copy_of_first"].startswith("repeated SOP Instance UID")
    chosen, why = select_lge_series(studies["1.2.3.1"])
    assert chosen is not None and chosen.series_uid == stack["series_uid"], why


def test_an_unreadable_folder_is_a_reason(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    root = tmp_path / "dicom"
    write_stack(root / "ok", rng, description="PSIR", series_number=3, n_slices=8,
                image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="P1", study_uid="1.2.3.1")
    (root / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):  # what a folder without read permission does (tests run as root here)
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    series, skipped = scan_tree(root)
    assert len(series) == 1 and series[0].n_images == 8
    assert ("locked", "unreadable folder (PermissionError)") in {(p.name, why) for p, why in skipped}


def test_ingest_reads_a_cp1252_semicolon_report_export(tmp_path):
    from lgeclip.io.cohort import read_excluded
    from lgeclip.io.ingest import ingest_dicom

    rng = np.random.default_rng(2)
    write_stack(tmp_path / "dicom" / "p1", rng, description="DE_PSIR_SAX", series_number=3, n_slices=9,
                image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="PT-1", study_uid="1.2.3.1")
    rows = [("PT-1", "A1", "FINDINGS: Müller protocol, 37 °C. Subendocardial late gadolinium enhancement of the "
                           "mid inferior wall.\nIMPRESSION: Inferior infarction."), ("", "A9", "stray row")]
    _write(tmp_path / "reports.csv", rows, "cp1252", ";")
    s = ingest_dicom(tmp_path / "dicom", tmp_path / "reports.csv", tmp_path / "cohort")
    assert s["n_ingested"] == 1 and s["labels"]["positive"] == 1
    assert s["reports"] == {"encoding": "cp1252", "delimiter": ";", "n_rows": 2, "n_patients": 1,
                            "n_skipped_rows": 1}
    assert ("reports-row-2", "report row not read: no patient id") in {tuple(r) for r in read_excluded(
        tmp_path / "cohort")}


def _recompress(src, dst, syntax):
    import pydicom

    ds = pydicom.dcmread(src)
    ds.compress(syntax)
    ds.save_as(dst)


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless", "JPEGLSLossless"])
def test_compressed_transfer_syntaxes_are_read(tmp_path, syntax):
    import pydicom
    import pydicom.uid

    from lgeclip.io.dicom import read_pixels

    if syntax == "JPEGLSLossless":
        pytest.importorskip("jpeg_ls", reason="pyjpegls (test extra) writes the JPEG-LS test file")
    rng = np.random.default_rng(3)
    write_stack(tmp_path / "s", rng, description="PSIR", series_number=3, n_slices=1,
                image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="P1", study_uid="1.2.3.1")
    src = next((tmp_path / "s").iterdir())
    _recompress(src, tmp_path / "c.dcm", getattr(pydicom.uid, syntax))
    assert pydicom.dcmread(tmp_path / "c.dcm").file_meta.TransferSyntaxUID == getattr(pydicom.uid, syntax)
    (want, sp_want), (got, sp) = read_pixels(src), read_pixels(tmp_path / "c.dcm")
    assert np.array_equal(got, want) and sp == sp_want


def test_multi_frame_and_undecodable_pixels_get_named_reasons(tmp_path, monkeypatch):
    import pydicom

    from lgeclip.io.dicom import read_pixels

    rng = np.random.default_rng(4)
    write_stack(tmp_path / "s", rng, description="PSIR", series_number=3, n_slices=1,
                image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="P1", study_uid="1.2.3.1")
    src = next((tmp_path / "s").iterdir())
    ds = pydicom.dcmread(src)
    ds.NumberOfFrames = 3
    ds.save_as(tmp_path / "multi.dcm")
    with pytest.raises(ValueError, match=r"multi-frame image \(3 frames"):
        read_pixels(tmp_path / "multi.dcm")
    _recompress(src, tmp_path / "j2k.dcm", pydicom.uid.JPEG2000Lossless)

    def no_decoder(self):  # what a machine without the JPEG 2000 plugin does
        raise RuntimeError("no decoder")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(ValueError, match=r"unreadable pixel data \(JPEG 2000 .*RuntimeError\)"):
        read_pixels(tmp_path / "j2k.dcm")


def test_a_dicomdir_is_an_index_its_images_are_read_and_missing_ones_named(tmp_path):
    import pydicom
    from pydicom.fileset import FileSet

    rng = np.random.default_rng(3)
    src = tmp_path / "export"
    write_stack(src, rng, description="PSIR", series_number=3, n_slices=6,
                image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id="P1", study_uid="1.2.3.1")
    fs = FileSet()
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p)
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"  # what the STUDY record needs
        fs.add(ds)
    root = tmp_path / "cd"
    fs.write(root)  # DICOMDIR + PT000000/ST000000/SE000000/IM00000n, as media exports lay them out
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert len(images) == 6
    images[0].unlink()  # an export that lost a file its index lists
    (tmp_path / "media").symlink_to(root)  # scanned through a link, as a mounted export often is
    series, skipped = scan_tree(tmp_path / "media")
    assert len(series) == 1 and series[0].n_images == 5
    reasons = {p.name: why for p, why in skipped}
    assert reasons["DICOMDIR"] == "DICOMDIR (an index of 6 files; the images are read by the scan)"
    assert reasons[images[0].name] == "listed in a DICOMDIR but missing"
    assert all(p.is_relative_to(tmp_path / "media") for p, _ in skipped)  # under the root as given (ingest keys)


def test_two_studies_of_one_patient_are_two_cases_in_one_fold(tmp_path):
    import pydicom

    from lgeclip.io.cohort import patient_key, patient_of, read_manifest
    from lgeclip.io.ingest import ingest_dicom
    from lgeclip.io.splits import read_splits

    rng = np.random.default_rng(4)
    rows = []
    for i, pid in enumerate(["PT-1", "PT-1", "PT-2", "PT-3", "PT-4", "PT-5", "PT-6", "PT-6"]):
        d = tmp_path / "dicom" / f"s{i}"
        write_stack(d, rng, description="PSIR", series_number=3, n_slices=8,
                    image_type=("DERIVED", "PRIMARY", "PSIR"), patient_id=pid, study_uid=f"1.2.3.{i + 1}")
        for p in d.iterdir():  # every study its own accession
            ds = pydicom.dcmread(p)
            ds.AccessionNumber = f"A{i}"
            ds.save_as(p)
        if pid != "PT-6":  # PT-6: two studies, one report without an accession: which study it describes is unknown
            text = "No late gadolinium enhancement." if i % 2 else "Subendocardial LGE of the mid inferior wall."
            rows.append((pid, f"A{i}", text))
    rows.append(("PT-6", "", "No late gadolinium enhancement."))
    _write(tmp_path / "reports.csv", rows, "utf-8")
    s = ingest_dicom(tmp_path / "dicom", tmp_path / "reports.csv", tmp_path / "cohort")
    cases = {r.patient_key: r.label for r in read_manifest(tmp_path / "cohort")}
    one = sorted(k for k in cases if patient_of(k) == patient_key("PT-1"))
    assert len(one) == 2 and {cases[k] for k in one} == {"positive", "negative"}  # each study with its own report
    assert s["n_ingested"] == 6 and s["n_patients"] == 5 and s["n_studies"] == 8
    folds = read_splits(tmp_path / "cohort")
    assert folds["patients"][one[0]]["fold"] == folds["patients"][one[1]]["fold"]
    for f in folds["folds"]:  # and on the same side of every fold's train / val / test
        assert {name for name, keys in f.items() if one[0] in keys} == {name for name, keys in f.items()
                                                                        if one[1] in keys}
    excluded = (tmp_path / "cohort" / "excluded.csv").read_text()
    assert excluded.count("several studies of this patient and no report with this study's accession") == 2
