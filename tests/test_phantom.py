"""Phantom cohort generator: DICOM structure, geometry, truth masks, determinism, scar statistics."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID
from scipy import ndimage

from lgeclip.phantom import generate_cohort, generate_patient, write_patient
from lgeclip.phantom.scar import aha_segment

PHASE_TYPES = {"PSIR", "R", "REAL", "R_IR"}
REQUIRED = ["Modality", "PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyInstanceUID",
            "SeriesInstanceUID", "SOPInstanceUID", "Manufacturer", "SeriesDescription", "SeriesNumber",
            "InstanceNumber", "ProtocolName", "ImageType", "ScanningSequence", "PixelSpacing", "SliceThickness",
            "SliceLocation", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns", "RescaleSlope",
            "RescaleIntercept", "BitsAllocated", "FrameOfReferenceUID"]


def _find(pred, seed: int = 0, start: int = 0):
    for i in range(start, start + 400):
        s = generate_patient(seed, i)
        if pred(s):
            return s
    raise AssertionError("no phantom patient matched")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three studies: an imaged ischaemic scar (with MVO when possible), a mixed-series Philips, a Siemens."""
    out = tmp_path_factory.mktemp("phantom")
    specs = [
        _find(lambda s: s.scar is not None and s.scar.pattern == "ischaemic" and s.scar.hidden is None),
        _find(lambda s: s.vendor == "PHILIPS" and s.variant != 1 and s.lge_performed),
        _find(lambda s: s.vendor == "SIEMENS" and s.variant == 0 and s.lge_performed),
    ]
    for s in specs:
        write_patient(s, out)
    return out


def _study(cohort: Path, truth: dict) -> list[pydicom.Dataset]:
    for d in (cohort / "dicom").iterdir():
        files = sorted(d.rglob("*.dcm"))
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        if first.StudyInstanceUID == truth["study_uid"]:
            return [pydicom.dcmread(f) for f in files]
    raise AssertionError("study not found")


def _truths(cohort: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cohort / "truth").glob("*/truth.json"))]


def test_dicom_roundtrip_has_scanner_tags(cohort):
    for truth in _truths(cohort):
        dss = _study(cohort, truth)
        assert len({d.SeriesInstanceUID for d in dss}) >= 5  # localizer, cine, LAX x2, single-shot, PSIR (+MAG)
        for ds in dss:
            for tag in REQUIRED:
                assert tag in ds, f"{tag} missing"
            assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.Modality == "MR" and ds.PatientID == truth["patient_id"]
            for u in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
                assert UID(u).is_valid
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        assert len({d.SOPInstanceUID for d in dss}) == len(dss)


def test_psir_geometry_consistent(cohort):
    for truth in _truths(cohort):
        by_sop = {d.SOPInstanceUID: d for d in _study(cohort, truth)}
        sl = [by_sop[s["sop_uid"]] for s in truth["slices"]]
        assert len(sl) >= 3
        iop = np.array(sl[0].ImageOrientationPatient, float)
        r, c = iop[:3], iop[3:]
        assert abs(r @ c) < 1e-6 and abs(np.linalg.norm(r) - 1) < 1e-6
        n = np.cross(r, c)
        pos = np.array([np.array(d.ImagePositionPatient, float) @ n for d in sl])
        assert np.allclose(np.abs(np.diff(pos)), 8.0, atol=1e-3)  # truth order = stack order, 8 mm apart
        assert len(set(np.sign(np.diff(pos)))) == 1
        apex = np.array([1.0, -1.0, -1.0])
        ipp = np.array([np.array(d.ImagePositionPatient, float) for d in sl])
        assert (ipp[-1] - ipp[0]) @ apex > 0  # truth lists base first
        for d, s in zip(sl, truth["slices"], strict=True):
            assert np.allclose(np.array(d.ImageOrientationPatient, float), iop)
            assert float(d.SliceThickness) == 8.0 and float(d.SpacingBetweenSlices) == 8.0
            assert abs(float(d.SliceLocation) - np.array(d.ImagePositionPatient, float) @ n) < 1e-3
            assert abs(float(d.SliceLocation) - s["slice_location"]) < 1e-3
            assert 1.3 <= float(d.PixelSpacing[0]) <= 2.2 and 192 <= d.Columns <= 256
        n_sl = len(sl)
        assert [s["level"] for s in truth["slices"]] == [
            ("basal", "mid", "apical")[min(int(3 * (k + 0.5) / n_sl), 2)] for k in range(n_sl)]


def test_truth_masks_align(cohort):
    for truth in _truths(cohort):
        npz = np.load(Path(cohort, "truth", truth["patient_id"], "slices.npz"), allow_pickle=False)
        for s in truth["slices"]:
            m = {k: npz[f"{s['npz_key']}_{k}"].astype(bool) for k in ("myocardium", "blood_pool", "rv", "scar", "mvo")}
            assert all(npz[f"{s['npz_key']}_{k}"].dtype == np.uint8 for k in m)
            assert m["myocardium"].sum() > 50 and m["blood_pool"].sum() > 20
            assert not (m["myocardium"] & m["blood_pool"]).any() and not (m["rv"] & m["myocardium"]).any()
            ring = ndimage.binary_dilation(m["blood_pool"], iterations=2)
            assert not (ring & ~(m["blood_pool"] | m["myocardium"])).any()  # myocardium encloses the blood pool
            filled = ndimage.binary_fill_holes(m["myocardium"])
            assert (filled & m["blood_pool"]).sum() >= 0.95 * m["blood_pool"].sum()
            assert not (m["scar"] & ~m["myocardium"]).any() and not (m["mvo"] & ~m["scar"]).any()
            assert s["has_scar"] == bool(m["scar"].any())
            d_myo = ndimage.distance_transform_edt(~m["myocardium"])
            d_rv = ndimage.distance_transform_edt(~m["rv"])
            for r, c in s["rvip_px"]:
                ri, ci = int(round(r)), int(round(c))
                assert d_myo[ri, ci] <= 2.0 and d_rv[ri, ci] <= 3.0, (s["npz_key"], r, c)


def test_scar_brighter_than_myocardium_on_psir(cohort):
    truth = next(t for t in _truths(cohort) if t["scar"])
    assert truth["scar_imaged"] and truth["scar_segments"]
    assert all(1 <= x <= 17 for x in truth["scar_segments"])
    by_sop = {d.SOPInstanceUID: d for d in _study(cohort, truth)}
    npz = np.load(Path(cohort, "truth", truth["patient_id"], "slices.npz"), allow_pickle=False)
    for s in [s for s in truth["slices"] if s["has_scar"]]:
        ds = by_sop[s["sop_uid"]]
        img = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        scar = npz[f"{s['npz_key']}_scar"].astype(bool) & ~npz[f"{s['npz_key']}_mvo"].astype(bool)
        core = ndimage.binary_erosion(npz[f"{s['npz_key']}_myocardium"].astype(bool)) & ~ndimage.binary_dilation(
            scar, iterations=2)
        if scar.sum() > 10 and core.sum() > 10:
            assert np.median(img[scar]) > np.median(img[core])


def test_psir_and_distractor_series_have_distinct_tags(cohort):
    for truth in _truths(cohort):
        dss = _study(cohort, truth)
        psir = [d for d in dss if d.SOPInstanceUID in {s["sop_uid"] for s in truth["slices"]}]
        assert {d.SeriesInstanceUID for d in psir} == {truth["psir_series_uid"]}
        assert all(PHASE_TYPES & set(d.ImageType) for d in psir)
        in_series = [d for d in dss if d.SeriesInstanceUID == truth["psir_series_uid"]]
        assert all(set(d.ImageType) & (PHASE_TYPES | {"M", "M_IR", "MAGNITUDE"}) for d in in_series)
        n_psir = np.cross(*np.array(psir[0].ImageOrientationPatient, float).reshape(2, 3))
        others = [d for d in dss if d.SeriesInstanceUID != truth["psir_series_uid"]]
        descs = {d.SeriesDescription for d in others}
        assert psir[0].SeriesDescription not in descs and len(descs) >= 4
        sax_like = [d for d in others if abs(np.cross(*np.array(d.ImageOrientationPatient, float).reshape(2, 3))
                                             @ n_psir) > 0.999]
        assert any(not (PHASE_TYPES & set(d.ImageType)) for d in sax_like)  # cine / single-shot: magnitude only
        trig = {}
        for d in sax_like:
            if "InversionTime" not in d:  # cine: several phases per position
                trig.setdefault(round(float(d.SliceLocation), 2), set()).add(float(d.TriggerTime))
        assert trig and max(len(v) for v in trig.values()) >= 3
        lax = [d for d in others if abs(np.cross(*np.array(d.ImageOrientationPatient, float).reshape(2, 3))
                                        @ n_psir) < 0.5 and "InversionTime" in d]
        assert len(lax) >= 2  # long-axis LGE (4CH, 2CH)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "phantom.json"}


def test_cohort_deterministic_across_workers(tmp_path):
    a = generate_cohort(tmp_path / "a", patients=2, seed=5, workers=1)
    b = generate_cohort(tmp_path / "b", patients=2, seed=5, workers=2)
    assert a["patients"] == b["patients"] == 2
    da, db = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert da == db and len(da) > 50
    rows = list(csv.DictReader(open(tmp_path / "a" / "reports.csv")))
    assert [r.keys() for r in rows][0] == {"patient_id", "accession", "report_text"}
    assert {r["patient_id"] for r in rows} == {p.name for p in (tmp_path / "a" / "truth").iterdir()}
    summary = (tmp_path / "a" / "phantom.json").read_text()
    assert all(r["patient_id"] not in summary for r in rows)  # no PHI in the summary
    with pytest.raises(FileExistsError):
        generate_cohort(tmp_path / "a", patients=1, seed=5)
    c = generate_cohort(tmp_path / "c", patients=2, seed=6, workers=1)
    assert _tree_digest(tmp_path / "c") != da and c["patients"] == 2


def test_scar_statistics_from_specs():
    specs = [generate_patient(0, i) for i in range(300)]
    frac = np.mean([s.scar is not None for s in specs])
    assert 0.33 <= frac <= 0.47, frac  # 40 % target; fixed seed, so this cannot flake
    pats = {s.scar.pattern for s in specs if s.scar}
    assert pats == {"ischaemic", "mid-wall", "subepicardial", "rvip"}
    assert any(s.scar.hidden for s in specs if s.scar)
    assert len({s.patient_id for s in specs}) == 300 and len({s.accession for s in specs}) == 300
    assert len({s.vendor for s in specs}) == 3
    for s in specs:
        f = s.facts
        assert f["lge"] == (s.scar is not None) and bool(f["segments"]) == f["lge"]
        assert set(f) >= {"lge", "pattern", "segments", "transmurality", "mvo", "lvef", "lvedv", "rv_normal",
                          "indication", "age", "sex", "patient_name", "lge_performed"}
        assert 3 <= s.geometry.n_slices <= 10
        if s.scar and s.scar.pattern == "ischaemic" and s.scar.territory == "LAD" and not s.scar.hidden:
            assert set(f["segments"]) & {1, 2, 7, 8, 13, 14, 17}


def test_hidden_scar_not_in_any_slice(tmp_path):
    spec = _find(lambda s: s.scar is not None and s.scar.hidden is not None)
    write_patient(spec, tmp_path)
    truth = json.loads(Path(tmp_path, "truth", spec.patient_id, "truth.json").read_text())
    assert truth["scar"] and truth["scar_segments"] and not truth["scar_imaged"]
    assert not any(s["has_scar"] for s in truth["slices"])


def test_aha_segment_rule():
    a_ant, a_inf = 40.0, 160.0
    got = aha_segment([41, 101, 161, 221, 281, 341], a_ant, a_inf, "basal").tolist()
    assert got == [2, 3, 4, 5, 6, 1]
    assert aha_segment([41], a_ant, a_inf, "mid").tolist() == [8]
    # apical: septal sector centred on the RVIP bisector (100 deg)
    assert aha_segment([100, 56, 146, 190, 280, 10], a_ant, a_inf, "apical").tolist() == [14, 14, 15, 15, 16, 13]
