"""Synthetic scar: region invariants, parameter ranges, sentence, blend bounds, determinism, transform, skip path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from lgeclip.anatomy.aha import aha_segments
from lgeclip.config import ConfigError, load_config
from lgeclip.synth import (
    ENHANCEMENT_WORDS,
    EXTENT_LAYERS,
    TEMPLATES,
    SynthScarCfg,
    level_suffix,
    scar_region,
    synthesize_scar,
    synthetic_scar_dict,
)
from lgeclip.synth.annulus import annulus_slice
from lgeclip.synth.scar import render_scar_weight

LEVELS = ("basal", "mid", "apical")


def _run(d: dict, seed: int, cfg: SynthScarCfg | None = None):
    rng = np.random.default_rng(seed)
    return synthesize_scar(d["image"], d["myocardium"], d["aha"], d["layers"], d["thickness"], d["level"], rng,
                           cfg or SynthScarCfg(), pixel_mm=d["pixel_mm"])


@pytest.fixture(scope="module")
def slices() -> dict[str, dict]:
    # 112 px at 1 mm and 224 px at 0.5 mm (the two preprocessing grids), wall 9 mm, off-centre so borders matter
    out = {}
    for lv in LEVELS:
        out[f"{lv}112"] = annulus_slice(112, level=lv, pixel_mm=1.0, wall_mm=9.0, center=(50.0, 60.0), seed=1)
        out[f"{lv}224"] = annulus_slice(224, level=lv, pixel_mm=0.5, wall_mm=9.0, seed=2)
    return out


def _draws(slices: dict, n_seeds: int = 25):
    for name, d in slices.items():
        for seed in range(n_seeds):
            yield name, d, _run(d, seed)


def test_annulus_sectors_follow_aha(slices):
    d = slices["mid112"]
    r, c = 50, 60  # centre; anterior is up, septum on the image's left
    radius = 22 + 4.5
    assert d["aha"][int(r - radius), c] == 7 and d["aha"][int(r + radius), c] == 10
    assert d["aha"][r, int(c - radius)] in (8, 9) and d["aha"][r, int(c + radius)] in (11, 12)
    assert set(np.unique(d["layers"][d["myocardium"] > 0])) == {1, 2, 3}
    assert set(np.unique(slices["apical112"]["aha"])) == {0, 13, 14, 15, 16}


def test_weight_is_zero_outside_region_and_myocardium(slices):
    for name, d, (scarred, weight, sentence, p) in _draws(slices):
        assert sentence is not None, (name, p["skipped"])
        region = scar_region(d["myocardium"], d["aha"], d["layers"], p["segments"], p["layers"])
        assert weight.dtype == np.float32 and weight.shape == d["image"].shape
        assert weight.min() >= 0.0 and weight.max() == pytest.approx(1.0)
        assert not weight[~region].any(), name
        assert not weight[d["myocardium"] == 0].any(), name
        assert set(p["segments"]) == set(aha_segments(p["location"], d["level"]))
        assert np.isin(d["aha"][weight > 0], p["segments"]).all()
        assert np.array_equal(scarred[weight == 0], d["image"][weight == 0])  # untouched outside the scar


def test_single_layer_scars_stay_in_their_layer(slices):
    seen = set()
    for name, d, (_, weight, _, p) in _draws(slices, 40):
        layers = set(np.unique(d["layers"][weight > 0]).tolist())
        assert layers <= set(EXTENT_LAYERS[p["extent"]]), (name, p["extent"], layers)
        if len(p["layers"]) == 1:
            seen.add(p["extent"])
            assert layers == set(p["layers"])
    assert seen == {"subendocardial", "mid-myocardial", "epicardial"}


def test_radii_lie_in_the_rho_range_of_the_extent(slices):
    expected = {1: (0.1, 0.4), 2: (0.3, 0.6), 3: (0.7, 1.0)}
    for name, d, (_, _, _, p) in _draws(slices):
        r, c = p["centre"]
        th_px = float(d["thickness"][r, c]) / d["pixel_mm"]  # mm -> pixels
        assert p["thickness_px"] == pytest.approx(th_px)
        lo, hi = expected[len(p["layers"])]
        assert tuple(p["rho"]) == (lo, hi)
        for radius in p["radii"]:
            assert max(0.01, th_px * lo) - 1e-9 <= radius <= th_px * hi + 1e-9, (name, p)
        assert 0.0 <= p["angle"] <= math.pi and 2.0 <= p["sigma"] <= 4.0 and 0.8 <= p["gamma"] <= 1.0


def test_sentence_names_the_drawn_location_extent_and_level(slices):
    templates, words = set(), set()
    for _, d, (_, _, sentence, p) in _draws(slices, 30):
        assert p["location"] in sentence.lower() and p["extent"] in sentence.lower()
        assert sentence.endswith(" " + level_suffix(d["level"]))
        assert p["enhancement_word"] in sentence
        templates.add(p["template"])
        words.add(p["enhancement_word"])
    assert level_suffix("mid") == "This image is from mid level."
    assert len(TEMPLATES) >= 8 and templates == set(range(len(TEMPLATES)))
    assert words == set(ENHANCEMENT_WORDS)


def test_blend_stays_in_range_and_reaches_gamma_max(slices):
    for name, d, (scarred, weight, _, p) in _draws(slices, 10):
        img = d["image"]
        assert scarred.min() >= img.min() - 1e-6 and scarred.max() <= 1.0 * img.max() + 1e-6, name
        peak = np.unravel_index(np.argmax(weight), weight.shape)
        assert scarred[peak] == pytest.approx(p["gamma"] * img.max(), rel=1e-5)
    cfg = SynthScarCfg(b1=0.5, b2=0.6)
    d = slices["mid112"]
    scarred, weight, _, p = _run(d, 3, cfg)
    assert 0.5 <= p["gamma"] <= 0.6
    inside = weight > 0
    assert scarred[inside].min() >= d["image"].min() - 1e-6
    assert scarred[inside].max() <= max(d["image"][inside].max(), 0.6 * d["image"].max()) + 1e-6


def test_cropped_render_equals_full_image_render(slices):
    cfg = SynthScarCfg()
    for name in ("mid112", "basal224"):
        d = slices[name]
        for seed in range(5):
            _, weight, _, p = _run(d, seed)
            region = scar_region(d["myocardium"], d["aha"], d["layers"], p["segments"], p["layers"])
            rr, cc = np.mgrid[0:region.shape[0], 0:region.shape[1]].astype(np.float64)
            dy, dx = rr - p["centre"][0], cc - p["centre"][1]
            u = (dx * math.cos(p["angle"]) + dy * math.sin(p["angle"])) / p["radii"][0]
            v = (dy * math.cos(p["angle"]) - dx * math.sin(p["angle"])) / p["radii"][1]
            g = ndimage.gaussian_filter((u * u + v * v <= 1).astype(np.float64), p["sigma"], mode="constant")
            g *= region
            np.testing.assert_allclose(weight, g / g.max(), atol=1e-5)
            np.testing.assert_array_equal(render_scar_weight(region, p, cfg), weight)


def test_same_seed_same_output_and_json_params(slices):
    d = slices["basal224"]
    a, b, c = _run(d, 11), _run(d, 11), _run(d, 12)
    for x, y in zip(a[:2], b[:2], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a[2] == b[2] and a[3] == b[3]
    assert a[3] != c[3]
    assert json.loads(json.dumps(a[3])) == a[3]


def test_skip_path_records_a_reason(slices):
    d = slices["mid112"]
    cfg = SynthScarCfg(walls_a=("inferior",), walls_b=(), combine=False, max_redraws=3)
    aha = np.where(d["aha"] == 7, 7, 0).astype(np.uint8)  # only the mid anterior segment exists
    rng = np.random.default_rng(0)
    scarred, weight, sentence, p = synthesize_scar(d["image"], d["myocardium"], aha, d["layers"], d["thickness"],
                                                   "mid", rng, cfg)
    assert sentence is None and not weight.any() and np.array_equal(scarred, d["image"])
    assert p["applied"] is False and "empty region" in p["skipped"]
    assert len(p["redraws"]) == cfg.max_redraws + 1 and all("segments [10]" in r["reason"] for r in p["redraws"])
    json.dumps(p)
    _, w0, s0, p0 = synthesize_scar(d["image"], np.zeros_like(d["myocardium"]), d["aha"], d["layers"],
                                    d["thickness"], "mid", rng, cfg)
    assert s0 is None and not w0.any() and "no myocardium" in p0["skipped"]


def test_redraw_finds_the_existing_region(slices):
    d = slices["mid112"]
    cfg = SynthScarCfg(walls_a=("anterior", "inferior"), walls_b=(), combine=False, max_redraws=20)
    aha = np.where(d["aha"] == 10, 10, 0).astype(np.uint8)  # only the mid inferior segment exists
    redrawn = 0
    for seed in range(20):
        _, weight, sentence, p = synthesize_scar(d["image"], d["myocardium"], aha, d["layers"], d["thickness"],
                                                 "mid", np.random.default_rng(seed), cfg)
        assert p["location"] == "inferior" and "inferior" in sentence.lower() and (aha[weight > 0] == 10).all()
        assert all(r["location"] == "anterior" for r in p["redraws"])
        redrawn += bool(p["redraws"])
    assert redrawn > 0


def test_config_validates_and_loads_overrides():
    with pytest.raises(ValueError, match="rho_transmural"):
        SynthScarCfg(rho_transmural=(0.7, 0.1))  # the paper's misprint is rejected
    with pytest.raises(ValueError, match="b1"):
        SynthScarCfg(b1=1.0, b2=0.8)
    with pytest.raises(ValueError, match="unknown"):
        SynthScarCfg(extents=("transmural", "patchy"))
    with pytest.raises(ValueError, match="prob"):
        SynthScarCfg(prob=1.5)
    cfg = load_config(SynthScarCfg, overrides=["prob=0.5", "rho_single=[0.2, 0.3]", "extents=[transmural]"])
    assert cfg.prob == 0.5 and cfg.rho("epicardial") == (0.2, 0.3)
    assert cfg.extents == ("transmural",)
    with pytest.raises(ConfigError):
        load_config(SynthScarCfg, overrides=["gama=0.9"])
    locs = SynthScarCfg().locations
    assert {"anterior", "septal", "inferoseptal", "anterolateral", "posterolateral"} <= set(locs)
    assert "posteroseptal" not in locs and len(locs) == len(set(locs))


def _item(d: dict, label) -> dict:
    return {k: d[k] for k in ("image", "myocardium", "aha", "layers", "thickness", "level", "pixel_mm")} | {
        "label": label, "caption": "original caption"}


def test_transform_applies_to_negatives_only(slices):
    from lgeclip.synth import RandSyntheticScar

    d = slices["mid112"]
    t = RandSyntheticScar(SynthScarCfg(prob=1.0))
    t.set_random_state(0)
    for label in (1, "positive", -1, "unknown", None):
        item = _item(d, label)
        out = t(item)
        assert out["image"] is item["image"] and out["caption"] == "original caption"
        assert out["synthetic"] is False and "scar_weight" not in out
    for label in (0, "negative", np.int64(0)):
        item = _item(d, label) | {"image": d["image"][None]}  # (1, H, W) is accepted
        out = t(item)
        assert out["synthetic"] is True and out["caption"] == t.params["sentence"]
        assert out["image"].shape == (1, 112, 112) and out["scar_weight"].shape == (1, 112, 112)
        assert not out["scar_weight"][0][d["myocardium"] == 0].any()
        assert not np.array_equal(out["image"], item["image"])
        assert np.array_equal(item["image"][0], d["image"])  # the input is not modified in place


def test_transform_seeding_and_functional_form_agree(slices):
    from lgeclip.synth import RandSyntheticScar

    d = slices["basal112"]
    runs = []
    for _ in range(2):
        t = RandSyntheticScar(SynthScarCfg()).set_random_state(seed=42)
        runs.append([t(_item(d, 0)) for _ in range(6)])
    for a, b in zip(*runs, strict=True):
        assert a["synthetic"] == b["synthetic"] and a["caption"] == b["caption"]
        np.testing.assert_array_equal(a["image"], b["image"])
    out, params = synthetic_scar_dict(_item(d, 0), np.random.default_rng([3, 1, 7]), SynthScarCfg(prob=1.0))
    again, params2 = synthetic_scar_dict(_item(d, 0), np.random.default_rng([3, 1, 7]), SynthScarCfg(prob=1.0))
    assert params == params2 and out["caption"] == again["caption"]
    np.testing.assert_array_equal(out["image"], again["image"])


def test_transform_honours_lambda(slices):
    from lgeclip.synth import RandSyntheticScar

    d = slices["mid112"]
    n, prob = 1500, 0.7
    t = RandSyntheticScar(SynthScarCfg(prob=prob)).set_random_state(123)
    hits = sum(t(_item(d, "negative"))["synthetic"] for _ in range(n))
    assert abs(hits - n * prob) <= 6 * math.sqrt(n * prob * (1 - prob)), hits  # 6 sigma and a fixed seed
    never = RandSyntheticScar(SynthScarCfg(prob=0.0)).set_random_state(1)
    assert not any(never(_item(d, 0))["synthetic"] for _ in range(50))


def _fake_cache(root, slices: dict) -> None:
    """A cache folder in the documented layout (index.csv + slices/<id>.npz) holding annulus slices."""
    import csv

    (root / "slices").mkdir(parents=True)
    rows = []
    for i, (name, d) in enumerate(slices.items()):
        arrays = {k: d[k] for k in ("image", "myocardium", "blood_pool", "aha", "layers", "thickness")}
        arrays |= {f"native_{k}": v for k, v in arrays.items()}
        np.savez(root / "slices" / f"{name}.npz", **arrays, pixel_mm=np.float32(d["pixel_mm"]),
                 level=np.str_(d["level"]), props=np.frombuffer(b"{}", np.uint8))
        rows.append({"slice_id": name, "patient_key": f"p{i}", "level": d["level"], "slice_index": "0",
                     "split": "train", "label": "negative", "sentences": "[]", "scar_truth": "", "source": "test",
                     "path": f"slices/{name}.npz"})
    with (root / "index.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_preview_and_bench_run(slices, tmp_path):
    pytest.importorskip("lgeclip.preprocess.cache")
    from lgeclip.synth.bench import bench_synth
    from lgeclip.synth.preview import synth_preview

    cache = tmp_path / "cache"
    _fake_cache(cache, {k: v for k, v in slices.items() if k.endswith("112")})
    out = synth_preview([cache], tmp_path / "p.png", n=2, seed=0)
    assert out["rows"] == 2 and (tmp_path / "p.png").stat().st_size > 10_000
    assert all(s.endswith("level.") for s in out["sentences"])
    res = bench_synth(n=20, out=tmp_path / "b.json", cache=cache)
    assert json.loads((tmp_path / "b.json").read_text())["annulus_224"]["n"] == 20
    assert res["cache"]["skipped"] == 0 and res["annulus_112"]["median_ms"] > 0
