"""EMIDEC PNG adapter: fake layout (always) and a subset of the real data (when present)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from lgeclip.io.cohort import load_slice, read_manifest
from lgeclip.io.emidec import estimate_geometry, find_cases, ingest_emidec, scar_geometry, wall_word
from lgeclip.io.splits import read_splits
from lgeclip.report import lge_status


def _ring(n_slice: int, k: int, scar_deg: tuple[float, float] | None, transmural: bool) -> np.ndarray:
    """Label map: LV ring whose radius grows with k (slice000 = apex, like EMIDEC); optional scar sector."""
    rr, cc = np.mgrid[:64, :64]
    r = np.hypot(rr - 32, cc - 32)
    inner = 5 + 2 * k
    lab = np.zeros((64, 64), np.uint8)
    lab[r < inner] = 1
    lab[(r >= inner) & (r < inner + 5)] = 2
    if scar_deg is not None:
        ang = np.degrees(np.arctan2(-(rr - 32), cc - 32)) % 360
        sect = (ang >= scar_deg[0]) & (ang < scar_deg[1]) & (lab == 2)
        if not transmural:
            sect &= r < inner + 2
        lab[sect] = 3
        lab[sect & (r < inner + 1)] = 4
    return lab


def _fake_emidec(root, n_slices=6):
    for split, case, scar in [("train", "Case_P001", (60, 120)), ("train", "Case_N002", None),
                              ("val", "Case_P003", (210, 270))]:
        for k in range(n_slices):
            lab = _ring(n_slices, k, scar if 1 <= k <= 3 else None, transmural=case == "Case_P001")
            img = np.where(lab >= 3, 250, np.where(lab == 2, 40, np.where(lab == 1, 150, 90))).astype(np.uint8)
            for d, arr in [(split, img), (split + "annot", lab)]:
                (root / d).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / d / f"{case}_slice{k:03d}.png")
    (root / "train" / "notes.png").write_bytes(b"ignored: not a case name")


def test_geometry_words():
    assert wall_word(90, "mid") == "anterior"
    assert wall_word(270, "mid") == "inferior"
    assert wall_word(0, "apical") == "lateral" and wall_word(180, "apical") == "septal"
    full = scar_geometry(_ring(6, 3, (60, 120), transmural=True), "mid")
    part = scar_geometry(_ring(6, 3, (60, 120), transmural=False), "mid")
    none = scar_geometry(_ring(6, 3, None, transmural=False), "mid")
    assert full["extent"] == "transmural" and full["walls"] == ["anterior"] and full["mvo"]
    assert part["extent"] in ("<50%", "subendocardial") and part["max_fraction"] < 0.5
    assert none["extent"] is None


def test_estimate_geometry_recovers_a_known_stretch_and_spacing():
    """Round hearts drawn on a grid of (1.2, 1.8) mm pixels (stretched 1.5x along the rows) and the volume that
    grid implies: the estimate gives the spacing back and the corrected LV is round."""
    sr, sc, z = 1.2, 1.8, 10.0
    rr, cc = np.mgrid[:160, :160]
    labels = []
    for k, (r_endo, tilt) in enumerate([(14, 0.9), (18, 1.1), (20, 1.0), (16, 1.05), (12, 0.95)]):
        y, x = (rr - 80) * sr, (cc - 78) * sc  # mm
        d = np.hypot(y * tilt, x / tilt)  # mildly elliptic hearts, axes along and across the grid
        lab = np.zeros((160, 160), np.uint8)
        lab[d < r_endo + 9] = 2
        lab[d < r_endo] = 1
        lab[(d >= r_endo) & (d < r_endo + 9) & (cc > 90) & (k == 2)] = 3  # scar is myocardium too
        labels.append(lab)
    n_myo = sum(int(np.isin(lab, (2, 3, 4)).sum()) for lab in labels)
    g = estimate_geometry(labels, n_myo * sr * sc * z / 1000.0, slice_spacing_mm=z)
    assert g["method"] == "official volume"
    np.testing.assert_allclose(g["spacing_mm"], (sr, sc), rtol=0.03)
    assert g["circularity_before"] < 0.75 and g["circularity_after"] > 0.85  # (the drawn hearts are mildly elliptic)
    fallback = estimate_geometry(labels, None, fallback_mm=1.5)
    assert fallback["method"].startswith("assumed")
    assert abs(np.prod(fallback["spacing_mm"]) - 2.25) < 1e-6  # the same stretch, the assumed area
    with pytest.raises(ValueError, match="cannot estimate"):
        estimate_geometry([np.zeros((8, 8), np.uint8)], 100.0)


def _display_point(center, radius, deg):
    """(row, col) at display angle ``deg`` (0 = image right, 90 = up) around ``center``."""
    t = np.radians(deg)
    return (center[0] - radius * np.sin(t), center[1] + radius * np.cos(t))


class _RotatedFrame:
    """A stand-in for RvipFrame: the heart is shown rotated by 180 deg (anterior RVIP down-right, inferior RVIP
    up-right); the first slice of every case gets no frame."""

    source = "test frame"

    def __call__(self, items):
        from lgeclip.anatomy.aha import aha_segment_map
        from lgeclip.anatomy.geometry import lv_center

        out = []
        for i, (_, _, myo, blood, level) in enumerate(items):
            if i == 0:
                out.append((None, "RVIPs missing"))
                continue
            c = lv_center(myo, blood)
            ant, inf = _display_point(c, 12, 300), _display_point(c, 12, 60)
            out.append((aha_segment_map(myo, ant, inf, level, center=c), ""))
        return out


def test_wall_words_follow_the_rvip_frame(tmp_path):
    """The scar of Case_P001 sits at the top of the image (display 60-120 deg): "anterior" under the display
    assumption, "inferior" in a frame whose RVIPs say the heart is upside down."""
    root = tmp_path / "emidec"
    _fake_emidec(root)
    s = ingest_emidec(root, tmp_path / "c", spacing_mm=1.25, frame=_RotatedFrame())
    assert s["wall_frame"] == {"method": "test frame", "rvip_frame": 15, "display_fallback": 3,
                               "reasons": {"RVIPs missing": 3}}
    from lgeclip.io.cohort import patient_key

    with open(tmp_path / "c" / "reports.csv", newline="") as f:
        text = {r["patient_id"]: r["report_text"] for r in csv.DictReader(f)}[patient_key("Case_P001")]
    findings = text.split("FINDINGS:")[1].split("IMPRESSION:")[0]
    assert "inferior" in findings and "anterior" not in findings
    plain = ingest_emidec(root, tmp_path / "d", spacing_mm=1.25)
    assert plain["wall_frame"]["method"].startswith("display assumption")


def test_fake_layout(tmp_path):
    root, out = tmp_path / "emidec", tmp_path / "cohort"
    _fake_emidec(root)
    assert list(find_cases(root)) == ["Case_N002", "Case_P001", "Case_P003"]
    s = ingest_emidec(root, out, spacing_mm=1.25)
    assert s["n_cases"] == 3 and s["n_slices"] == 18 and s["label_group_mismatch"] == []
    assert "slice000 is the apex" in s["settings"]["order"]
    recs = read_manifest(out)
    assert {r.source for r in recs} == {"emidec"} and all(r.has_masks for r in recs)
    by_pt = {}
    for r in recs:
        by_pt.setdefault(r.patient_key, []).append(r)
    labels = sorted(rs[0].label for rs in by_pt.values())
    assert labels == ["negative", "positive", "positive"]
    for rs in by_pt.values():
        rs.sort(key=lambda r: r.slice_index)
        assert [r.level for r in rs] == ["basal"] * 2 + ["mid"] * 2 + ["apical"] * 2
        areas = [int((load_slice(out / r.image_path)["blood_pool"]).sum()) for r in rs]
        assert areas == sorted(areas, reverse=True)  # index 0 = base = largest ring
        z = load_slice(out / rs[0].image_path)
        assert z["image"].dtype == np.float32 and np.allclose(z["spacing_mm"], 1.25)
        assert np.isnan(z["rvip"]).all() and set(np.unique(z["myocardium"])) <= {0, 1}
        if rs[0].label == "positive":
            # scar on original slices 1..3 -> base-first indices 2..4
            assert [r.scar_truth for r in rs] == [0, 0, 1, 1, 1, 0]
            z = load_slice(out / rs[3].image_path)
            assert (z["scar"] <= z["myocardium"]).all() and z["mvo"].sum() > 0
    with open(out / "reports.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    texts = " ".join(r["report_text"] for r in rows)
    assert "anterior" in texts and ("inferoseptal" in texts or "inferior" in texts)
    for r in rows:
        assert lge_status(r["report_text"]) == by_pt[r["patient_id"]][0].label
    assert json.loads((out / "cohort.json").read_text())["settings"]["spacing_mm"] == 1.25
    splits = read_splits(out)  # written by the ingest: 3 patients, each tested by exactly one of the 5 folds
    assert set(splits["patients"]) == set(by_pt)
    assert sorted(k for f in splits["folds"] for k in f["test"]) == sorted(by_pt)


@pytest.mark.emidec
def test_real_subset(emidec_dir, tmp_path):
    cases = find_cases(emidec_dir)
    pick = [c for c in cases if "_P" in c][:3] + [c for c in cases if "_N" in c][:2]
    sub = tmp_path / "sub"  # symlinks only: nothing copied into the repo
    for c in pick:
        for _, ip, lp in cases[c]:
            for p in (ip, lp):
                (sub / p.parent.name).mkdir(parents=True, exist_ok=True)
                (sub / p.parent.name / p.name).symlink_to(p)
    (sub / "clinical_and_volumes.csv").symlink_to(emidec_dir / "clinical_and_volumes.csv")
    s = ingest_emidec(sub, tmp_path / "out")
    assert s["n_cases"] == 5 and s["label_group_mismatch"] == []
    geo = s["geometry"]
    assert geo["methods"] == {"official volume": 5} and "Case_" not in json.dumps(geo)  # keyed by patient_key
    assert geo["circularity_after_quantiles"][2] > geo["circularity_before_quantiles"][2]
    assert 0.6 < geo["spacing_row_mm_quantiles"][2] < 2.5 and 0.6 < geo["spacing_col_mm_quantiles"][2] < 2.5
    assert s["labels"] == {"positive": 3, "negative": 2}
    assert s["n_slices"] == sum(len(cases[c]) for c in pick)
    recs = read_manifest(tmp_path / "out")
    pos = [r for r in recs if r.label == "positive"]
    assert all(r.scar_truth == 0 and r.scar_pattern == "" for r in recs if r.label == "negative")
    assert any(r.scar_truth == 1 for r in pos) and all(r.scar_pattern == "ischaemic" for r in pos)  # infarcts
    shutil.rmtree(tmp_path / "out")
