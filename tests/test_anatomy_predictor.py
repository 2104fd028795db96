"""Two-pass anatomy inference: view geometry, mapping back to the native grid (with fake nets), evaluation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from lgeclip.anatomy.predictor import (
    AnatomyPredictor,
    LandmarkNetCfg,
    NoLVError,
    SegNetCfg,
    ViewCfg,
    crop_geometry,
    whole_image_geometry,
)
from lgeclip.anatomy.types import AnatomyResult
from lgeclip.data.anatomy import ring_slice, write_ring_cohort
from lgeclip.eval.anatomy import dice, evaluate_anatomy
from lgeclip.io.cohort import load_slice, save_slice
from lgeclip.io.splits import ensure_splits, patient_split

torch.set_num_threads(1)
VIEW_POINTS = torch.tensor([[40.3, 70.6], [88.2, 52.4]])  # where the fake landmark net puts its peaks


class FakeSeg(nn.Module):
    """Classifies a clean ring slice by intensity (view values in [0, 1]): background (and padding) 0, myocardium
    0.375, blood pool 1; intensity order matches adjacency, so interpolation creates no spurious class."""

    def __init__(self, empty: bool = False) -> None:
        super().__init__()
        self.empty = empty

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blood, myo = (x >= 0.69).float(), ((x > 0.19) & (x < 0.69)).float()
        if self.empty:
            blood, myo = torch.zeros_like(x), torch.zeros_like(x)
        return 20.0 * torch.cat([1 - blood - myo, blood, myo], dim=1)  # (B, 3, S, S) logits


class FakeLandmarks(nn.Module):
    """Quadratic logits peaking at fixed view points, whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        r = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        c = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
        p = VIEW_POINTS.view(1, 2, 2, 1, 1)
        d2 = (r - p[:, :, 0]) ** 2 + (c - p[:, :, 1]) ** 2
        return (-d2 / 8.0).expand(b, -1, -1, -1)  # (B, 2, S, S)


def fake_predictor(empty: bool = False) -> AnatomyPredictor:
    view = ViewCfg(size=128, pixel_mm=1.0, percentiles=(0.0, 100.0))
    return AnatomyPredictor(FakeSeg(empty), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(), view, device="cpu")


def clean_ring(seed: int, shape=(150, 130), spacing=2.0) -> dict:
    arr = ring_slice(np.random.default_rng(seed), shape=shape, spacing=spacing, noise=0.0)
    arr["image"] = (200.0 + 300.0 * arr["myocardium"] + 800.0 * arr["blood_pool"]).astype(np.float32)
    return arr


def clean_cohort(cohort):
    """Give every slice of a ring cohort the clean intensities FakeSeg understands."""
    for path in cohort.glob("slices/*/*.npz"):
        arr = load_slice(path)
        image, sp = arr.pop("image"), tuple(arr.pop("spacing_mm"))
        image = 200.0 + 300.0 * arr["myocardium"] + 800.0 * arr["blood_pool"]
        save_slice(path, image, sp, **arr)
    return cohort


def test_crop_geometry_roundtrip_and_sampling():
    g = crop_geometry((70.2, 40.7), (1.6, 2.0), size=64, pixel_mm=1.5, angle_deg=33.0, flip_lr=True)
    pts = np.array([[3.0, 4.0], [60.5, 12.25]])
    np.testing.assert_allclose(g.to_view(g.to_native(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(g.to_native([[31.5, 31.5]])[0], (70.2, 40.7), atol=1e-9)  # centre pixel on centre
    # a bright native pixel lands where to_view says
    img = np.zeros((140, 100), np.float32)
    img[80, 50] = 1.0
    v = g.sample(img, order=1, antialias=False)
    peak = np.unravel_index(np.argmax(v), v.shape)
    assert np.hypot(*(np.array(peak) - g.to_view([[80.0, 50.0]])[0])) < 1.0


def test_whole_image_geometry_covers_the_field():
    g = whole_image_geometry((120, 200), (1.5, 1.5), size=128)
    corners = g.to_native([[-0.5, -0.5], [127.5, 127.5]])
    np.testing.assert_allclose(corners[:, 1], [-0.5, 199.5], atol=1e-6)  # the long side fills the view
    assert corners[0, 0] < -0.5 and corners[1, 0] > 119.5  # the short side is padded


@pytest.mark.parametrize("spacing", [(2.0, 2.0), (1.8, 2.3)])
def test_two_pass_maps_ring_back_to_native(spacing):
    arr = clean_ring(1)
    res = fake_predictor().predict(arr["image"], spacing)
    assert isinstance(res, AnatomyResult) and res.shape == arr["image"].shape
    assert dice(res.myocardium, arr["myocardium"]) > 0.9
    assert dice(res.blood_pool, arr["blood_pool"]) > 0.95
    rr, cc = np.nonzero(arr["blood_pool"])
    assert np.hypot(res.lv_center[0] - rr.mean(), res.lv_center[1] - cc.mean()) < 0.5
    # points: view -> native by the pass-2 crop affine around the final centre (1 mm pixels)
    expected = np.asarray(res.lv_center) + (VIEW_POINTS.numpy() - 63.5) * 1.0 / np.asarray(spacing)
    np.testing.assert_allclose(res.rvip, expected, atol=0.05)


def test_predict_batch_matches_single_and_reports_failures():
    pred = fake_predictor()
    a, b = clean_ring(2), clean_ring(3, shape=(128, 160), spacing=1.7)
    batch = pred.predict_batch([(a["image"], 2.0), (b["image"], 1.7)])
    single = pred.predict(b["image"], (1.7, 1.7))
    np.testing.assert_array_equal(batch[1].myocardium, single.myocardium)
    np.testing.assert_allclose(batch[1].rvip, single.rvip, atol=1e-4)
    blank = np.zeros((96, 96), np.float32)
    with pytest.raises(ValueError, match="no LV found"):
        pred.predict_batch([(a["image"], 2.0), (blank, 2.0)], names=["a", "blank"])
    out = pred.predict_batch([(a["image"], 2.0), (blank, 2.0)], errors="none")
    assert out[0] is not None and out[1] is None
    # batch jobs get the reason in place, and the healthy slices are not redone
    calls = []
    run = pred._run
    pred._run = lambda net, views: calls.append(len(views)) or run(net, views)
    back = pred.predict_batch([(blank, 2.0), (a["image"], 2.0), (b["image"], 1.7)], names=["blank", "a", "b"],
                              errors="return")
    assert isinstance(back[0], NoLVError) and "blank: no LV found" in str(back[0])
    np.testing.assert_array_equal(back[2].myocardium, single.myocardium)
    assert sum(calls) <= 3 + 1 + 2 + 2  # pass 1 (3, then the blank again magnified), pass 2 and landmarks (2 each)
    with pytest.raises(ValueError, match="errors must be"):
        pred.predict_batch([(a["image"], 2.0)], errors="skip")
    with pytest.raises(NoLVError, match="slice 0: no LV found"):
        fake_predictor(empty=True).predict(a["image"], 2.0)


def test_memo_answers_a_seen_slice_without_the_nets(tmp_path):
    pred = fake_predictor()
    pred.memo = {}
    a, b = clean_ring(2), clean_ring(3, shape=(128, 160), spacing=1.7)
    blank = np.zeros((96, 96), np.float32)
    first = pred.predict_batch([(a["image"], 2.0), (blank, 2.0)], names=["a", "blank"], errors="return")
    assert len(pred.memo) == 1  # failures are not kept: their reason names the slice that asked
    calls = []
    run = pred._run
    pred._run = lambda net, views: calls.append(len(views)) or run(net, views)
    # the same slice read back from a file (float32 spacing), a new one and the blank again, under other names
    save_slice(tmp_path / "a.npz", a["image"], (2.0, 2.0))
    back = load_slice(tmp_path / "a.npz")
    again = pred.predict_batch([(back["image"], tuple(float(x) for x in back["spacing_mm"])), (b["image"], 1.7),
                                (blank, 2.0)], names=["a2", "b", "blank2"], errors="return")
    assert again[0] is first[0] and isinstance(again[2], NoLVError) and "blank2: no LV found" in str(again[2])
    assert sum(calls) <= 2 + 1 + 1 + 1  # pass 1 (b, blank; blank magnified), pass 2 and landmarks for b only
    fresh = fake_predictor().predict(b["image"], (1.7, 1.7))
    np.testing.assert_array_equal(again[1].myocardium, fresh.myocardium)


def test_evaluate_anatomy_with_fake_nets(tmp_path):
    cohort = clean_cohort(write_ring_cohort(tmp_path / "rings", n_patients=5, slices_per_patient=2, seed=4))
    emidec_like = clean_cohort(write_ring_cohort(tmp_path / "no_rvip", n_patients=3, slices_per_patient=1, seed=5,
                                                 with_rvip=False))
    seg_run = tmp_path / "seg"
    seg_run.mkdir()
    ensure_splits(cohort, n_folds=2)  # fold 1 tests 2 of the 5 patients
    (seg_run / "config.yaml").write_text("task:\n  data:\n    fold: 1\n")
    pred = fake_predictor()
    res = evaluate_anatomy(seg_run, tmp_path / "lm", cohort, out=tmp_path / "eval", split="test", predictor=pred)
    assert res["n_slices"] == 4 and res["n_patients"] == 2 and res["n_failed"] == 0 and res["fold"] == 1
    assert 0.0 <= res["plausible_fraction"] <= 1.0
    assert sum(res["implausible_reasons"].values()) == round(4 * (1 - res["plausible_fraction"]))
    assert set(res["dice_myo_per_patient"]) == {k for k, v in patient_split(cohort, 1).items() if v == "test"}
    assert res["dice_myo_mean"] > 0.9
    assert res["rvip_mm"]["anterior"]["n"] == 4 and res["rvip_mm"]["pooled"]["n"] == 8
    saved = json.loads((tmp_path / "eval" / "anatomy_eval.json").read_text())
    assert saved["dice_myo_per_patient"] == res["dice_myo_per_patient"]
    assert set(res["dice_myo_volume_per_patient"]) == set(res["dice_myo_per_patient"])
    assert res["dice_myo_volume_mean"] > 0.9
    levels = {row["level"] for row in csv.DictReader((tmp_path / "eval" / "per_slice.csv").read_text().splitlines())}
    assert set(res["dice_myo_per_level"]) == levels and all(v > 0.9 for v in res["dice_myo_per_level"].values())
    assert (tmp_path / "eval" / "anatomy_grid.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "per_slice.csv").read_text().count("\n") == 5
    assert "scar_in_myo_fraction" not in res  # no scar truth in this cohort
    # scar truth = the whole truth wall of one slice: its scar inside the predicted wall is the wall overlap
    scarred = sorted((emidec_like / "slices").rglob("*.npz"))[0]
    arr = dict(np.load(scarred))
    np.savez(scarred, **arr, scar=arr["myocardium"])
    res2 = evaluate_anatomy(seg_run, tmp_path / "lm", emidec_like, out=tmp_path / "eval2", split="all", predictor=pred)
    assert res2["n_slices"] == 3 and res2["rvip_mm"]["pooled"]["n"] == 0 and res2["rvip_mm"]["pooled"]["median"] is None
    row = next(r for r in csv.DictReader((tmp_path / "eval2" / "per_slice.csv").read_text().splitlines())
               if int(r["scar_px"]) > 0)
    assert int(row["scar_px"]) == int(arr["myocardium"].sum()) and row["scar_in_myo_px"] == row["myo_overlap_px"]
    assert res2["n_scar_slices"] == 1 and res2["scar_px"] == int(row["scar_px"])
    assert res2["scar_in_myo_fraction"] == pytest.approx(int(row["myo_overlap_px"]) / int(row["scar_px"]))
    assert 0.9 < res2["scar_in_myo_fraction"] and res2["scar_in_myo_fraction"] + res2["scar_in_blood_fraction"] <= 1
    assert (tmp_path / "eval2" / "anatomy_grid.png").is_file()
    with pytest.raises(ValueError, match="split"):
        evaluate_anatomy(seg_run, tmp_path / "lm", cohort, split="bogus", predictor=pred)


def test_pass1_retries_small_lv_on_magnified_view():
    arr = clean_ring(6, shape=(256, 256), spacing=1.5)
    n_lv = int(arr["myocardium"].sum() + arr["blood_pool"].sum())
    view = ViewCfg(size=128, pixel_mm=1.0, percentiles=(0.0, 100.0))
    # the 384 mm field in 128 px (3 mm/px) shows the LV in ~n_lv / 4 pixels: below this minimum; 2x zoom shows ~n_lv
    cfg = SegNetCfg(min_lv_pixels=n_lv // 2)
    single = AnatomyPredictor(FakeSeg(), FakeLandmarks(), cfg, view, LandmarkNetCfg(), view, device="cpu",
                              pass1_zooms=(1.0,))
    with pytest.raises(NoLVError, match="pass 1"):
        single.predict(arr["image"], 1.5)
    retry = AnatomyPredictor(FakeSeg(), FakeLandmarks(), cfg, view, LandmarkNetCfg(), view, device="cpu")
    assert retry.pass1_zooms == (1.0, 2.0)
    res = retry.predict(arr["image"], 1.5)
    assert dice(res.myocardium, arr["myocardium"]) > 0.9


def test_volume_dice_pools_pixels_over_slices():
    from lgeclip.eval.anatomy import _volume_dice

    rows = [{"myo_overlap_px": 40, "myo_pred_px": 50, "myo_true_px": 50},   # slice Dice 0.8
            {"myo_overlap_px": 0, "myo_pred_px": 0, "myo_true_px": 10}]     # failed slice: Dice 0
    assert _volume_dice(rows) == pytest.approx(80 / 110)  # vs 0.4 as the mean of slice Dice
    assert _volume_dice([{"myo_overlap_px": 0, "myo_pred_px": 0, "myo_true_px": 0}]) == 1.0


class CornerSeg(nn.Module):
    """Blood-pool logit grows towards the top-left corner, whatever the input: not flip-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        r = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        c = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
        blood = (-(r + 2 * c) / 16.0).expand(b, 1, h, w)
        return torch.cat([torch.zeros_like(blood), blood, torch.zeros_like(blood)], 1)  # (B, 3, S, S)


def test_flip_tta_averages_the_four_flips():
    view = ViewCfg(size=32, pixel_mm=1.0)
    rng = np.random.default_rng(0)
    views = [rng.random((32, 32)).astype(np.float32) for _ in range(2)]
    plain = AnatomyPredictor(CornerSeg(), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(), view, device="cpu")
    tta = AnatomyPredictor(CornerSeg(), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(), view, device="cpu",
                           tta=True)
    p, q = plain._seg_probs(views), tta._seg_probs(views)
    assert p.shape == q.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    expected = (p + p[:, :, ::-1] + p[:, :, :, ::-1] + p[:, :, ::-1, ::-1]) / 4  # hand: mean of the flipped maps
    np.testing.assert_allclose(q, expected, atol=1e-6)
    assert not np.allclose(p, p[:, :, ::-1])  # the net itself is asymmetric
    d8 = AnatomyPredictor(CornerSeg(), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(), view, device="cpu",
                          tta="dihedral")._seg_probs(views)
    # the 8 symmetries of the square = the 4 flips and their transposes: the mean over all 8 maps
    np.testing.assert_allclose(d8, (expected + expected.transpose(0, 1, 3, 2)) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="tta must be"):
        AnatomyPredictor(CornerSeg(), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(), view, tta="rot")
    eq = fake_predictor()  # an intensity-only (flip-equivariant) net: TTA changes nothing
    eq_tta = fake_predictor()
    eq_tta.tta = True
    np.testing.assert_allclose(eq_tta._seg_probs(views), eq._seg_probs(views), atol=1e-6)


class _Bright(nn.Module):
    """Both heatmaps = 20 x the view: the peak is the brightest pixel (a rotation-equivariant 'net')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * x.expand(-1, 2, -1, -1)


def test_landmark_priors_band_and_rotation_tta():
    view = ViewCfg(size=128, pixel_mm=1.0, percentiles=(0.0, 100.0))
    img = np.zeros((128, 128), np.float32)
    img[30, 97] = 1.0
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(img, 2.0)
    img /= img.max()
    myo = np.zeros((128, 128), bool)
    myo[60:70, 60:70] = True
    pred = AnatomyPredictor(FakeSeg(), _Bright(), SegNetCfg(), view, LandmarkNetCfg(), view, device="cpu")
    plain = pred._decode(pred._landmark_logits([img], [myo]))[0]
    np.testing.assert_allclose(plain, [[30, 97], [30, 97]], atol=0.2)
    pred.lm_cfg.rotation_tta = True  # an equivariant net gives the same point under rotation TTA
    np.testing.assert_allclose(pred._decode(pred._landmark_logits([img], [myo]))[0], plain, atol=0.2)
    fixed = AnatomyPredictor(FakeSeg(), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(rotation_tta=True), view,
                             device="cpu")
    moved = fixed._decode(fixed._landmark_logits([img], [myo]))[0]
    assert np.abs(moved - VIEW_POINTS.numpy()).max() > 5  # a net that ignores its input is averaged over rotations
    pred.lm_cfg.rotation_tta, pred.lm_cfg.band_mm = False, 4.0  # the bright spot is 27 px away: outside the band
    banded = pred._decode(pred._landmark_logits([img], [myo]))[0]
    dist = ndi.distance_transform_edt(~myo)
    for p in banded:
        assert dist[int(round(p[0])), int(round(p[1]))] <= 4.0 + 1.0
    with pytest.raises(ValueError, match="band_mm"):
        LandmarkNetCfg(band_mm=-1.0)


def _two_peaks(points_and_heights, size=128, sigma=3.0) -> np.ndarray:
    """A log-probability map (size, size) with Gaussian bumps at the given (row, col) with the given heights."""
    r, c = np.mgrid[:size, :size].astype(np.float32)
    m = np.full((size, size), -20.0, np.float32)
    for (pr, pc), h in points_and_heights:
        m = np.maximum(m, h - ((r - pr) ** 2 + (c - pc) ** 2) / (2 * sigma**2))
    return m


def test_joint_decoding_separates_collapsed_rvips():
    """Both heatmaps peak at the same end of the RV; the inferior one also has a weaker mode 80 deg away. With the
    separation prior the pair is re-picked from the local maxima: anterior keeps its peak, inferior takes its
    second mode (its score is higher than moving the anterior one); without the prior both stay collapsed."""
    from lgeclip.anatomy.predictor import separated_peaks

    ctr = np.array([63.5, 63.5])
    ant_peak, inf_second = (33.5, 63.5), (63.5 - 30 * np.cos(np.radians(80)), 63.5 - 30 * np.sin(np.radians(80)))
    scores = np.stack([_two_peaks([(ant_peak, 0.0), ((60.0, 34.0), -9.0)]),
                       _two_peaks([((34.5, 64.5), 0.0), (inf_second, -2.0)])])
    view = ViewCfg(size=128, pixel_mm=1.0, percentiles=(0.0, 100.0))
    pred = AnatomyPredictor(FakeSeg(), FakeLandmarks(), SegNetCfg(), view, LandmarkNetCfg(), view, device="cpu")
    collapsed = pred._decode(scores[None].copy())[0]
    assert np.hypot(*(collapsed[0] - collapsed[1])) < 3
    pred.lm_cfg.min_separation_mm, pred.lm_cfg.min_angle_deg = 10.0, 30.0
    fixed = pred._decode(scores[None].copy())[0]
    np.testing.assert_allclose(fixed[0], ant_peak, atol=0.3)
    np.testing.assert_allclose(fixed[1], inf_second, atol=0.3)
    assert np.abs(np.array(separated_peaks(scores, ctr, 10.0, 30.0)) - np.array([ant_peak, inf_second])).max() <= 1
    # a plausible pair is left as it was; no pair at all satisfying the prior -> None (and the peaks are kept)
    apart = np.stack([_two_peaks([(ant_peak, 0.0)]), _two_peaks([(inf_second, 0.0)])])
    np.testing.assert_allclose(pred._decode(apart[None].copy())[0], [ant_peak, inf_second], atol=0.3)
    one_mode = np.stack([_two_peaks([(ant_peak, 0.0)]), _two_peaks([((34.5, 64.5), 0.0)])])
    assert separated_peaks(one_mode, ctr, 10.0, 30.0) is None
    with pytest.raises(ValueError, match="min_angle_deg"):
        LandmarkNetCfg(min_angle_deg=180.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_rvips_from_an_rv_mask(seed):
    """The second route to the RVIPs: ends of the RV / myocardium contact arc, named by handedness, land on the
    ring's insertion points; a mirrored image with handedness -1 gives the same names; no RV -> the reason."""
    from lgeclip.anatomy.predictor import geometric_rvips

    arr = ring_slice(np.random.default_rng(seed), noise=0.0)
    sp = tuple(float(v) for v in arr["spacing_mm"])
    res = AnatomyResult(arr["myocardium"], arr["blood_pool"], (np.nan, np.nan), (np.nan, np.nan), rv=arr["rv"])
    pts, why = geometric_rvips(res, sp, touch_mm=6.0)  # the ring's RV stops 1.5 px (~3 mm) short of the wall
    assert why == "" and np.abs((pts - arr["rvip"]) * np.asarray(sp)).max() < 4.0  # mm
    w = arr["myocardium"].shape[1]
    mirrored = AnatomyResult(arr["myocardium"][:, ::-1], arr["blood_pool"][:, ::-1], (np.nan, np.nan),
                             (np.nan, np.nan), rv=arr["rv"][:, ::-1])
    mpts, _ = geometric_rvips(mirrored, sp, handedness=-1.0, touch_mm=6.0)
    np.testing.assert_allclose(mpts[:, 1], w - 1 - pts[:, 1], atol=1e-3)
    np.testing.assert_allclose(mpts[:, 0], pts[:, 0], atol=1e-3)
    plain = AnatomyResult(arr["myocardium"], arr["blood_pool"], (np.nan, np.nan), (np.nan, np.nan))
    assert geometric_rvips(plain, sp) == (None, "the segmentation net predicts no RV class")
    empty = AnatomyResult(arr["myocardium"], arr["blood_pool"], (np.nan, np.nan), (np.nan, np.nan),
                          rv=np.zeros_like(arr["rv"]))
    assert geometric_rvips(empty, sp)[1] == "no RV cavity on the slice"


def test_rvip_frame_names_walls_of_labelled_slices():
    from lgeclip.anatomy.frames import RvipFrame

    arr = clean_ring(3, shape=(150, 130), spacing=2.0)
    items = [(arr["image"], (2.0, 2.0), arr["myocardium"], arr["blood_pool"], "basal")]
    (seg, why), = RvipFrame(fake_predictor())(items)
    # the fake landmark net's two points, seen from the labelled LV centre, subtend a plausible angle: six sectors
    assert why == "" and set(np.unique(seg[arr["myocardium"] > 0])) == {1, 2, 3, 4, 5, 6}
    assert (seg[arr["myocardium"] == 0] == 0).all()
    (seg, why), = RvipFrame(fake_predictor(empty=True))(items)
    assert seg is None and why == "no LV found by the anatomy nets"
    (seg, why), = RvipFrame(fake_predictor(), min_angle_deg=179.0, max_angle_deg=180.0)(items)
    assert seg is None and why == "RVIP angle out of range"


def test_plausibility_problem_names_the_check():
    from lgeclip.preprocess.chain import plausibility_problem

    arr = clean_ring(5)
    res = fake_predictor().predict(arr["image"], 2.0)
    assert plausibility_problem(res, (2.0, 2.0)) is None
    close = AnatomyResult(res.myocardium, res.blood_pool, res.anterior_rvip, res.anterior_rvip, lv_center=res.lv_center)
    assert plausibility_problem(close, (2.0, 2.0)).startswith("RVIPs too close")
    empty = AnatomyResult(np.zeros_like(res.myocardium), np.zeros_like(res.blood_pool), res.anterior_rvip,
                          res.inferior_rvip, lv_center=res.lv_center)
    assert plausibility_problem(empty, (2.0, 2.0)) == "no LV found (empty myocardium)"
