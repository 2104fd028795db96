"""The invertible preprocessing chain and the cache builder, on synthetic rings."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from test_geometry import make_ring

from lgeclip.anatomy import AnatomyResult, lv_center
from lgeclip.config import ConfigError, load_config
from lgeclip.io.cohort import SliceRecord, save_slice, write_manifest
from lgeclip.io.splits import patient_split, splits_digest
from lgeclip.preprocess import (
    ImplausibleSlice,
    PreprocessCfg,
    build_cache,
    invert_points,
    load_cached_slice,
    preprocess_slice,
    read_cache,
)
from lgeclip.utils import config_dir

SP = 1.4  # native spacing (mm)
C = (70.3, 95.6)  # native LV centre (px)


def synthetic_slice(shape=(160, 180), center=C, r_in=14.0, r_out=20.0, rvip_deg=(125.0, 245.0), scar=True):
    """Native slice: image, AnatomyResult, truth dict (scar in the inferoseptal wall, i.e. 60..120 deg from ant)."""
    myo, bp, ant, inf = make_ring(shape, center, r_in, r_out, rvip_deg)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    img = 0.4 + 0.05 * np.sin(rr / 5.0) * np.cos(cc / 7.0)
    img = np.where(bp, 0.9, np.where(myo, 0.15, img)).astype(np.float32) * 1000.0
    truth = {}
    if scar:
        ang = np.rad2deg(np.arctan2(-(rr - center[0]), cc - center[1])) % 360  # display angle, as in make_ring
        s = myo & (ang > rvip_deg[0] + 70) & (ang < rvip_deg[0] + 110)
        img[s] = 1100.0
        truth["scar"] = s.astype(np.uint8)
    return img, AnatomyResult(myo, bp, ant, inf), truth


@pytest.fixture(scope="module")
def pre():
    img, anat, truth = synthetic_slice()
    return preprocess_slice(img, (SP, SP), anat, PreprocessCfg(), truth=truth, level="basal"), anat, truth


def test_shapes_ranges_and_centre(pre):
    p, anat, _ = pre
    o = p.oriented
    assert o.image.shape == (112, 112) and o.image.dtype == np.float32
    assert 0.0 <= o.image.min() and o.image.max() <= 1.0 and (o.image == 1.0).any()
    for k in ("myocardium", "blood_pool", "aha", "layers"):
        assert getattr(o, k).dtype == np.uint8 and getattr(o, k).shape == (112, 112)
    c = lv_center(o.myocardium, o.blood_pool)
    assert abs(c[0] - 55.5) < 1.0 and abs(c[1] - 55.5) < 1.0
    assert np.abs(o.lv_center - 55.5).max() <= 0.5 + 1e-6
    a, i = o.rvip
    assert abs(a[1] - i[1]) < 0.5 and a[0] < i[0]
    assert p.pixel_mm == 1.0
    # the native variant is not rotated: the RVIPs keep their native (non-vertical) arrangement
    na, ni = p.native.rvip
    assert abs(na[1] - ni[1]) > 3


def test_maps_partition_and_thickness(pre):
    p, _, _ = pre
    for v in (p.oriented, p.native):
        myo = v.myocardium > 0
        assert not (myo & (v.blood_pool > 0)).any()
        assert np.all(v.aha[~myo] == 0) and np.all(np.isin(v.aha[myo], range(1, 7)))
        assert np.all(v.layers[~myo] == 0) and np.all(np.isin(v.layers[myo], [1, 2, 3]))
        assert np.all(v.thickness[~myo] == 0)
        assert abs(np.median(v.thickness[myo]) - 6 * SP) < 1.0
        assert set(np.unique(v.aha[myo]).tolist()) == set(range(1, 7))


def test_scar_carried_into_the_right_segment(pre):
    p, _, truth = pre
    for v in (p.oriented, p.native):
        scar = v.truth["scar"] > 0
        assert scar.sum() > 0.8 * truth["scar"].sum() * SP**2
        assert not (scar & (v.myocardium == 0)).any()
        assert (v.aha[scar] == 3).mean() > 0.9  # inferoseptal
        assert v.image[scar].mean() > 0.9  # the bright scar stays bright


def test_invert_points_and_image(pre):
    p, anat, _ = pre
    for oriented, v in ((True, p.oriented), (False, p.native)):
        back = p.invert_points(v.rvip, oriented=oriented)
        assert np.abs(back - anat.rvip).max() < 1e-4
        # a feature found on the cache grid maps back to the native feature within 1 native pixel
        c = np.array([lv_center(v.myocardium, v.blood_pool)])
        assert np.abs(invert_points(p.props, c, oriented)[0] - np.asarray(anat.lv_center)).max() < 1.0
        myo_back = p.invert_image(v.myocardium, oriented=oriented, order=0) > 0
        native = anat.myocardium > 0
        dice = 2 * (myo_back & native).sum() / (myo_back.sum() + native.sum())
        assert dice > 0.9, dice
    # props are JSON and carry what the chain needs
    json.dumps(p.props)
    assert p.props["native_shape"] == [160, 180] and p.props["crop_box"][2] - p.props["crop_box"][0] == 112


def test_upsample_two_gives_224():
    img, anat, truth = synthetic_slice()
    p = preprocess_slice(img, SP, anat, PreprocessCfg(upsample=2), truth=truth, level="mid")
    o = p.oriented
    assert o.image.shape == (224, 224) and p.pixel_mm == 0.5
    assert abs(np.median(o.thickness[o.myocardium > 0]) - 6 * SP) < 1.0
    assert np.all(np.isin(o.aha[o.myocardium > 0], range(7, 13)))
    c = lv_center(o.myocardium, o.blood_pool)
    assert abs(c[0] - 111.5) < 1.5 and abs(c[1] - 111.5) < 1.5
    back = p.invert_points(np.array([c]))[0]
    assert np.abs(back - np.asarray(anat.lv_center)).max() < 1.0
    a, i = o.rvip
    assert abs(a[1] - i[1]) < 0.5 and a[0] < i[0]


def test_no_orient_and_anisotropic_spacing():
    img, anat, _ = synthetic_slice(scar=False)
    p = preprocess_slice(img, (SP, 1.1), anat, PreprocessCfg(orient=False), level="apical")
    assert p.props["orient"] is None
    assert np.array_equal(p.oriented.image, p.native.image)
    assert np.all(np.isin(p.oriented.aha[p.oriented.myocardium > 0], range(13, 17)))


def test_mirrored_handedness_puts_septum_on_the_other_side():
    img, anat, truth = synthetic_slice()
    w = img.shape[1]
    flip = lambda q: (q[0], w - 1 - q[1])  # noqa: E731
    anat_m = AnatomyResult(anat.myocardium[:, ::-1], anat.blood_pool[:, ::-1], flip(anat.anterior_rvip),
                           flip(anat.inferior_rvip))
    p = preprocess_slice(img, SP, anat, truth=truth, level="basal")
    pm = preprocess_slice(img[:, ::-1], SP, anat_m, truth={"scar": truth["scar"][:, ::-1]}, level="basal")
    col = lambda v: np.nonzero(v.truth["scar"])[1].mean()  # noqa: E731
    assert (col(p.oriented) - 55.5) * (col(pm.oriented) - 55.5) < 0  # septum (scar) left in one, right in the other
    assert (pm.oriented.aha[pm.oriented.truth["scar"] > 0] == 3).mean() > 0.9


@pytest.mark.parametrize("change,reason", [
    ("empty", "no LV"), ("coincident", "too close"), ("far", "from the myocardium"), ("edge", "outside the image"),
    ("small", "area"), ("opposite", "subtend"), ("inside", "cavity"),
])
def test_implausible(change, reason):
    img, anat, _ = synthetic_slice(scar=False)
    myo, bp, ant, inf = anat.myocardium, anat.blood_pool, anat.anterior_rvip, anat.inferior_rvip
    spacing = SP
    if change == "empty":
        myo, bp = np.zeros_like(myo), np.zeros_like(bp)
    elif change == "coincident":
        inf = (ant[0] + 1.0, ant[1])
    elif change == "far":
        ant = (5.0, 5.0)
    elif change == "edge":
        img, a2, _ = synthetic_slice(shape=(45, 45), center=(22.0, 22.0), scar=False)
        myo, bp, ant, inf = a2.myocardium, a2.blood_pool, a2.anterior_rvip, a2.inferior_rvip  # crop: 80 native px
    elif change == "small":
        spacing = 0.3
    elif change == "opposite":
        inf = (2 * C[0] - ant[0], 2 * C[1] - ant[1])
    elif change == "inside":
        ant = (C[0] - 5.0, C[1] - 5.0)
    with pytest.raises(ImplausibleSlice, match=reason):
        preprocess_slice(img, spacing, AnatomyResult(myo, bp, ant, inf), PreprocessCfg(min_myo_area_mm2=300.0))


@pytest.mark.parametrize("change,reason", [("coincident", "too close"), ("missing", "missing"),
                                           ("inside", "cavity")])
def test_rvip_fallback_keeps_the_slice_unoriented_without_segments(change, reason):
    img, anat, truth = synthetic_slice()
    ant, inf = anat.anterior_rvip, anat.inferior_rvip
    if change == "coincident":
        inf = (ant[0] + 1.0, ant[1])
    elif change == "missing":
        ant = inf = (np.nan, np.nan)
    else:
        ant = (C[0] - 5.0, C[1] - 5.0)
    bad = AnatomyResult(anat.myocardium, anat.blood_pool, ant, inf)
    with pytest.raises(ImplausibleSlice, match=reason):
        preprocess_slice(img, SP, bad, PreprocessCfg(), truth=truth, level="mid")
    p = preprocess_slice(img, SP, bad, PreprocessCfg(rvip_fallback=True), truth=truth, level="mid")
    assert reason in p.props["rvip_problem"] and p.props["orient"] is None
    np.testing.assert_array_equal(p.oriented.image, p.native.image)  # no rotation
    assert not p.oriented.aha.any() and p.oriented.myocardium.any()  # no segments: synth places no scar here
    assert set(np.unique(p.oriented.layers[p.oriented.myocardium > 0])) == {1, 2, 3}  # layers need no RVIPs
    assert p.oriented.truth["scar"].sum() > 0
    # plausible RVIPs are used as before with the fallback on
    ok = preprocess_slice(img, SP, anat, PreprocessCfg(rvip_fallback=True), truth=truth, level="mid")
    assert ok.props["rvip_problem"] is None and ok.props["orient"] is not None and ok.oriented.aha.max() == 12


def test_config_validation_and_recipes():
    with pytest.raises(ValueError, match="upsample"):
        PreprocessCfg(upsample=0)
    with pytest.raises(ValueError, match="fold"):
        PreprocessCfg(fold=-1)
    for name, size in (("default", 112), ("paper224", 224), ("no_orient", 112)):
        cfg = load_config(PreprocessCfg, config_dir("preprocess", f"{name}.yaml"))
        assert cfg.size == size
    assert load_config(PreprocessCfg, config_dir("preprocess", "no_orient.yaml")).orient is False
    with pytest.raises(ConfigError):
        load_config(PreprocessCfg, None, ["crop_size=3"])


# ----------------------------------------------------------------------------------------------- cache builder
def _fake_cohort(root: Path, n_patients: int = 4) -> list[SliceRecord]:
    recs = []
    for p in range(n_patients):
        key = f"pt-{p:012d}"
        for idx, level in enumerate(("basal", "mid", "apical")):
            img, anat, truth = synthetic_slice(scar=p % 2 == 0, rvip_deg=(125.0 + 3 * p, 240.0 + 2 * idx))
            rvip = anat.rvip
            myo = anat.myocardium
            if p == 1 and level == "mid":
                rvip = np.full((2, 2), np.nan, np.float32)  # unknown truth RVIPs
            if p == 2 and level == "apical":
                myo = np.zeros_like(myo)
                myo[70:72, 95:97] = 1  # implausibly small
            rel = f"slices/{key}/{idx}.npz"
            save_slice(root / rel, img, (SP, SP), myocardium=myo, blood_pool=anat.blood_pool, rvip=rvip,
                       scar=truth.get("scar", np.zeros_like(myo)))
            recs.append(SliceRecord(key, level, idx, 3, rel, (SP, SP), [f"sentence {p}"],
                                    "positive" if p % 2 == 0 else "negative", "phantom", True, int(p % 2 == 0)))
    write_manifest(root, recs)
    return recs


def test_build_cache_oracle(tmp_path):
    recs = _fake_cohort(tmp_path / "cohort")
    out = tmp_path / "cache"
    summary = build_cache(tmp_path / "cohort", None, None, out, overrides=["upsample=1"], oracle=True)
    assert summary["n_manifest"] == 12 and summary["n_cached"] == 10 and summary["n_excluded"] == 2
    with (out / "excluded.csv").open() as f:
        excl = {r["slice_id"]: r["reason"] for r in csv.DictReader(f)}
    assert "rvip" in excl[f"{recs[4].slice_id}"]
    assert "area" in excl[f"{recs[8].slice_id}"]
    rows = read_cache(out)
    assert len(rows) == 10 and {r.split for r in rows} <= {"train", "val", "test"}
    by_patient = {}
    for r in rows:
        by_patient.setdefault(r.patient_key, set()).add(r.split)
    assert all(len(s) == 1 for s in by_patient.values())
    r0 = rows[0]
    assert r0.path.exists() and r0.sentences == ["sentence 0"] and r0.scar_truth == 1 and r0.source == "phantom"
    with np.load(r0.path, allow_pickle=False) as z:
        for k in ("image", "myocardium", "blood_pool", "aha", "layers", "thickness", "rvip", "scar"):
            assert k in z.files and f"native_{k}" in z.files
    o, n = load_cached_slice(r0.path), load_cached_slice(r0.path, oriented=False)
    assert o["image"].shape == (112, 112) and o["level"] == r0.level and o["pixel_mm"] == 1.0
    assert not any(k.startswith("native_") for k in o) and set(o) == set(n)
    assert not np.array_equal(o["image"], n["image"])
    assert np.abs(invert_points(o["props"], o["rvip"]) - invert_points(n["props"], n["rvip"], False)).max() < 1e-4
    info = json.loads((out / "cache.json").read_text())
    assert info["oracle"] is True and "seconds_per_slice" in info and info["settings"]["crop"] == 112
    # the split column is fold 0 of the cohort's splits.json (created on first use), recorded with its digest
    assert {r.patient_key: r.split for r in rows} == {k: v for k, v in patient_split(tmp_path / "cohort", 0).items()
                                                      if k in by_patient}
    assert info["splits"] == {"file": str((tmp_path / "cohort" / "splits.json").resolve()),
                              "digest": splits_digest(tmp_path / "cohort"), "fold": 0}
    assert load_config(PreprocessCfg, out / "preprocess.yaml") == PreprocessCfg()


def test_build_cache_with_predictor_batches(tmp_path, monkeypatch):
    _fake_cohort(tmp_path / "cohort", n_patients=2)
    calls = {"batch": 0}

    class FakePredictor:
        @classmethod
        def from_run_dirs(cls, seg_run, landmarks_run, tta=False, bf16=True):
            assert Path(seg_run).name == "seg" and Path(landmarks_run).name == "lm"
            return cls()

        def predict(self, image, spacing_mm):
            raise ValueError(f"no LV found in {image.shape}")

        def predict_batch(self, items, names=None, errors="raise"):
            calls["batch"] += 1
            assert len(names) == len(items)
            if calls["batch"] == 2:
                raise ValueError("one slice has no LV")  # the builder redoes this batch one by one
            out = []
            for im, _sp in items:
                myo, bp, ant, inf = make_ring(im.shape, C, 14.0, 20.0, (125.0, 245.0))
                out.append(AnatomyResult(myo, bp, ant, inf))
            return out

    monkeypatch.setitem(sys.modules, "lgeclip.anatomy.predictor",
                        types.SimpleNamespace(AnatomyPredictor=FakePredictor))
    summary = build_cache(tmp_path / "cohort", tmp_path / "seg", tmp_path / "lm", tmp_path / "cache",
                          config=PreprocessCfg(batch_size=4))
    # batches hold whole patients (a stack is predicted together): 3 + 3 slices at batch_size 4; the second fails
    assert summary["n_cached"] == 3 and summary["n_excluded"] == 3 and calls["batch"] == 2
    reasons = [r[1] for r in csv.reader((tmp_path / "cache" / "excluded.csv").open())][1:]
    assert all("anatomy prediction failed: no LV found" in r for r in reasons)
    assert summary["seg_run"].endswith("seg") and summary["landmarks_run"].endswith("lm")


def test_build_cache_uses_the_predictor_it_is_given(tmp_path, monkeypatch):
    _fake_cohort(tmp_path / "cohort", n_patients=2)

    class NoRuns:  # building a predictor from the run folders is what a given predictor saves
        @classmethod
        def from_run_dirs(cls, *args, **kwargs):
            raise AssertionError("build_cache built its own predictor")

    class Given:
        tta, bf16, calls = False, True, 0

        def predict_batch(self, items, names=None, errors="raise"):
            Given.calls += len(items)
            return [AnatomyResult(*make_ring(im.shape, C, 14.0, 20.0, (125.0, 245.0))) for im, _sp in items]

    monkeypatch.setitem(sys.modules, "lgeclip.anatomy.predictor", types.SimpleNamespace(AnatomyPredictor=NoRuns))
    s = build_cache(tmp_path / "cohort", tmp_path / "seg", tmp_path / "lm", tmp_path / "cache", predictor=Given())
    assert s["n_cached"] == 6 and Given.calls == 6 and s["seg_run"].endswith("seg")
    odd = Given()
    odd.tta = True  # not what the recipe asks (seg_tta false): refused, not silently mixed
    with pytest.raises(ValueError, match="seg_tta"):
        build_cache(tmp_path / "cohort", tmp_path / "seg", tmp_path / "lm", tmp_path / "odd", predictor=odd)


def test_build_cache_makes_rvips_consistent_along_each_stack(tmp_path, monkeypatch):
    _fake_cohort(tmp_path / "cohort", n_patients=2)

    class OutlierPredictor:  # one slice of the first patient has its anterior RVIP 180 degrees off
        @classmethod
        def from_run_dirs(cls, seg_run, landmarks_run, tta=False, bf16=True):
            return cls()

        def predict_batch(self, items, names=None, errors="raise"):
            out = []
            for (im, _sp), name in zip(items, names, strict=True):
                ant = 305.0 if name == "pt-000000000000_01_mid" else 125.0
                myo, bp, a, i = make_ring(im.shape, C, 14.0, 20.0, (ant, 245.0))
                out.append(AnatomyResult(myo, bp, a, i))
            return out

    monkeypatch.setitem(sys.modules, "lgeclip.anatomy.predictor",
                        types.SimpleNamespace(AnatomyPredictor=OutlierPredictor))
    off = build_cache(tmp_path / "cohort", tmp_path / "seg", tmp_path / "lm", tmp_path / "off")
    on = build_cache(tmp_path / "cohort", tmp_path / "seg", tmp_path / "lm", tmp_path / "on",
                     overrides=["rvip_stack_max_dev_deg=45"])
    assert off["n_rvip_stack_changed"] == 0 and on["n_rvip_stack_changed"] == 1
    moved = load_cached_slice(tmp_path / "on" / "slices" / "pt-000000000000_01_mid.npz")
    kept = load_cached_slice(tmp_path / "off" / "slices" / "pt-000000000000_01_mid.npz")
    neighbour = load_cached_slice(tmp_path / "on" / "slices" / "pt-000000000000_00_basal.npz")
    # after orientation the moved slice's RVIPs sit where its neighbours' do; without the pass they do not
    assert np.abs(moved["rvip"] - neighbour["rvip"]).max() < 3.0 < np.abs(kept["rvip"] - neighbour["rvip"]).max()
