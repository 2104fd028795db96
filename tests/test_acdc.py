"""ACDC ingest: RVIP truth from the RV / myocardium contact arc, anatomical naming, NIfTI fixtures, real data."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from lgeclip.io.acdc import contact_arc_ends, find_patients, ingest_acdc, name_rvips
from lgeclip.io.cohort import load_slice, read_excluded, read_manifest
from lgeclip.io.splits import read_splits


def ring_labels(shape=(96, 96), center=(48.0, 50.0), r_endo=12.0, r_epi=18.0, rv_offset=24.0, r_rv=16.0,
                rv_side=-1.0) -> tuple[np.ndarray, np.ndarray]:
    """ACDC labels (1 RV, 2 myocardium, 3 LV) of a standard-display slice (RV on the left when rv_side=-1) and
    the analytic RVIPs [anterior (upper), inferior (lower)]: the epicardium / RV-circle intersections."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    d = np.hypot(yy - center[0], xx - center[1])
    crv = (center[0], center[1] + rv_side * rv_offset)
    lab = np.zeros(shape, np.uint8)
    lab[(np.hypot(yy - crv[0], xx - crv[1]) <= r_rv) & (d > r_epi)] = 1
    lab[(d > r_endo) & (d <= r_epi)] = 2
    lab[d <= r_endo] = 3
    a = (r_epi**2 - r_rv**2 + rv_offset**2) / (2 * rv_offset)
    h = np.sqrt(max(r_epi**2 - a**2, 0.0))  # 0 when the RV circle misses the epicardium
    col = center[1] + rv_side * a
    return lab, np.array([[center[0] - h, col], [center[0] + h, col]])


def _ends(lab: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    rr, cc = np.nonzero(lab == 3)
    c = (float(rr.mean()), float(cc.mean()))
    ends, why = contact_arc_ends(lab == 2, lab == 1, c, (1.0, 1.0))
    assert ends is not None, why
    return ends, c


def test_contact_arc_ends_are_the_insertion_points():
    lab, truth = ring_labels()
    ends, c = _ends(lab)
    named = name_rvips(ends, c, 1.0)
    # contact pixels lie up to touch_mm inside the wall, so the ends sit within a few pixels of the analytic points
    assert np.linalg.norm(named - truth, axis=1).max() < 4.0
    assert named[0, 0] < c[0] < named[1, 0]  # standard display: anterior above the centre, inferior below


def test_naming_follows_handedness_not_display():
    lab, truth = ring_labels()
    # rotations keep the handedness: the same anatomical point stays anterior
    for k in range(4):
        rot = np.rot90(lab, k)
        ends, c = _ends(rot)
        named = name_rvips(ends, c, 1.0)
        r0, c0 = truth[0]
        n = lab.shape[0]
        want = {0: (r0, c0), 1: (n - 1 - c0, r0), 2: (n - 1 - r0, n - 1 - c0), 3: (c0, n - 1 - r0)}[k]
        assert np.linalg.norm(named[0] - np.array(want)) < 4.0, k
    # a mirrored display (RV on the right): handedness -1 keeps the upper end anterior, +1 would swap it
    mirrored = lab[:, ::-1]
    ends, c = _ends(mirrored)
    assert name_rvips(ends, c, -1.0)[0, 0] < c[0]
    assert name_rvips(ends, c, 1.0)[0, 0] > c[0]
    # the rule itself on two hand-placed points: inferior -> anterior runs clockwise on screen through the RV side
    c = (10.0, 10.0)
    np.testing.assert_allclose(name_rvips(np.array([[15.0, 6.0], [5.0, 6.0]]), c, 1.0), [[5, 6], [15, 6]])


def test_contact_arc_reasons():
    lab, _ = ring_labels()
    no_rv = np.where(lab == 1, 0, lab)
    c = (48.0, 50.0)
    assert contact_arc_ends(no_rv == 2, no_rv == 1, c, (1.0, 1.0)) == (None, "no RV cavity on the slice")
    far = ring_labels(rv_offset=40.0, r_rv=10.0)[0]
    assert contact_arc_ends(far == 2, far == 1, c, (1.0, 1.0))[1] == "RV cavity does not touch the myocardium"
    small = ring_labels(rv_offset=36.0, r_rv=16.0)[0]  # RV grazing the wall
    assert "shorter than" in contact_arc_ends(small == 2, small == 1, c, (1.0, 1.0))[1]


def _write_patient(root, name: str, group: str, n_slices: int = 6, zooms=(1.25, 1.5, 8.0), broken: bool = False):
    """A patient folder in ACDC layout. The volumes hold the standard display TRANSPOSED (as ACDC does); the LV
    shrinks with the slice index (base first) and the most apical slice has no RV."""
    d = root / name
    d.mkdir(parents=True)
    (d / "Info.cfg").write_text(f"ED: 1\nES: 5\nGroup: {group}\nHeight: 170\nNbFrame: 20\nWeight: 70\n")
    # display grid (rows x cols) = (96, 80); spacing (row, col) in the display = (zooms[1], zooms[0])
    truth = []
    for frame in (1, 5):
        vol, img = np.zeros((80, 96, n_slices), np.uint8), np.zeros((80, 96, n_slices), np.float32)
        for k in range(n_slices):
            s = 1.0 - 0.08 * k
            lab, pts = ring_labels((96, 80), (48.0, 44.0), 10 * s, 15 * s, 20 * s, 13 * s)
            if k == n_slices - 1:
                lab[lab == 1] = 0
                pts = np.full((2, 2), np.nan)
            vol[..., k] = lab.T
            img[..., k] = (np.choose(lab, [50, 400, 120, 600]) + k).T.astype(np.float32)
            if frame == 1:
                truth.append(pts)
        aff = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])
        nib.save(nib.Nifti1Image(img, aff), str(d / f"{name}_frame{frame:02d}.nii.gz"))
        if not (broken and frame == 5):
            nib.save(nib.Nifti1Image(vol, aff), str(d / f"{name}_frame{frame:02d}_gt.nii.gz"))
    return truth


def test_ingest_acdc_fixture(tmp_path):
    root = tmp_path / "ACDC" / "training"
    truth = _write_patient(root, "patient001", "NOR")
    for i, g in enumerate(("MINF", "DCM", "HCM", "RV", "NOR", "MINF"), start=2):
        _write_patient(root, f"patient{i:03d}", g)
    _write_patient(root, "patient009", "NOR", broken=True)
    (root / "notes").mkdir()
    assert [p.name for p in find_patients(tmp_path / "ACDC")][:2] == ["patient001", "patient002"]
    out = tmp_path / "cohort"
    s = ingest_acdc(tmp_path / "ACDC", out)
    assert s["n_patients"] == 8 and s["n_ingested"] == 7 and s["n_slices"] == 7 * 2 * 6
    assert s["rvip"] == {"with_truth": 7 * 2 * 5, "without": {"no RV cavity on the slice": 7 * 2}}
    assert s["handedness_frames"] == {"+": 14, "-": 0}
    (key, reason), = read_excluded(out)
    assert key.startswith("pt-") and "patient009" not in reason and reason == "ValueError: ES frame 05: no labels NIfTI"
    recs = read_manifest(out)
    assert {r.source for r in recs} == {"acdc"} and all(r.has_masks and r.label == "unknown" for r in recs)
    p1 = [r for r in recs if r.image_path.startswith(f"slices/{recs[0].patient_key}/ed")]
    assert [r.level for r in p1] == ["basal", "basal", "mid", "mid", "apical", "apical"]
    for r, pts in zip(p1, truth, strict=True):
        a = load_slice(out / r.image_path)
        assert a["image"].shape == (96, 80) and r.spacing_mm == (1.5, 1.25)  # the display grid, spacing swapped
        assert set(a) >= {"myocardium", "blood_pool", "rv", "rvip"}
        if np.isfinite(pts).all():
            assert np.linalg.norm(a["rvip"] - pts, axis=1).max() < 4.0  # anterior = upper end, named right
        else:
            assert np.isnan(a["rvip"]).all()
    sp = read_splits(out)
    assert sp["stratified_by"] == "ACDC group" and len(sp["patients"]) == 7
    assert json.loads((out / "cohort.json").read_text())["groups"]["MINF"] == 2


def test_ingest_acdc_reversed_stack(tmp_path):
    """Base-first order comes from the LV area, not from the file's slice order."""
    root = tmp_path / "acdc"
    _write_patient(root, "patient001", "NOR")
    for f in root.glob("patient001/*.nii.gz"):
        img = nib.load(str(f))
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., ::-1].copy(), img.affine), str(f))
    ingest_acdc(root, tmp_path / "c")
    recs = [r for r in read_manifest(tmp_path / "c") if "/ed" in r.image_path]
    areas = [int((load_slice(tmp_path / "c" / r.image_path)["myocardium"] > 0).sum()) for r in recs]
    assert areas == sorted(areas, reverse=True)  # slice_index 0 = the base (largest LV)


def test_ingest_acdc_real(acdc_dir, tmp_path):
    """Five real patients (linked, never copied): every slice with myocardium kept, most with RVIPs, and in the
    standard display the anterior RVIP lies above the inferior one on mid slices (anterior up, RV left)."""
    src = find_patients(acdc_dir)[:5]
    if len(src) < 5:
        pytest.skip(f"{acdc_dir}: fewer than 5 ACDC patients")
    for p in src:
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / p.name).symlink_to(p.resolve())
    s = ingest_acdc(tmp_path / "in", tmp_path / "c")
    assert s["n_ingested"] == 5 and s["handedness_frames"]["-"] == 0
    assert s["rvip"]["with_truth"] >= 0.7 * s["n_slices"]
    up = []
    for r in read_manifest(tmp_path / "c"):
        a = load_slice(tmp_path / "c" / r.image_path)
        if r.level == "mid" and np.isfinite(a["rvip"]).all():
            rr, cc = np.nonzero(a["blood_pool"])
            up.append(a["rvip"][0, 0] < a["rvip"][1, 0] and a["rvip"][:, 1].mean() < cc.mean())
    assert len(up) >= 10 and np.mean(up) >= 0.8


def test_ingest_acdc_command(tmp_path):
    from typer.testing import CliRunner

    from lgeclip.cli.main import app

    _write_patient(tmp_path / "acdc", "patient001", "NOR")
    res = CliRunner().invoke(app, ["ingest-acdc", str(tmp_path / "acdc"), "--out", str(tmp_path / "c"),
                                   "--frames", "ED"])
    assert res.exit_code == 0, res.output
    assert len(read_manifest(tmp_path / "c")) == 6  # one frame of six slices
    assert json.loads((tmp_path / "c" / "cohort.json").read_text())["frames"] == ["ED"]
