"""Where the scar is: regional questions on hand-made rings (both handednesses), the study's 16-segment table,
and the bullseye's layout against the AHA plot."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from test_geometry import make_ring

from lgeclip.anatomy.aha import aha_segment_map
from lgeclip.anatomy.geometry import wall_layers
from lgeclip.infer.segments import (
    RegionMaps,
    bright_threshold,
    bullseye_segment_at,
    bullseye_wedge,
    edited_images,
    healthy_level,
    localise,
    plot_bullseye,
    study_segments,
)

C = (48.0, 48.0)


def bright_score(images: np.ndarray, levels: list[str]) -> np.ndarray:
    """A stand-in slice rule: P(LGE) rises with the number of bright (> 0.6) pixels in the image."""
    n = (np.asarray(images) > 0.6).reshape(len(images), -1).sum(1)
    return 1.0 / (1.0 + np.exp(-(n - 8) / 2.0))


def ring_slice(scar_deg: float, level: str = "basal", mirrored: bool = False, depth: str = "endo"):
    """A dark ring (healthy wall 0.1) with a bright 30-deg patch in its inner or outer part, centred at ``scar_deg``
    on screen; RVIPs at 120 / 240 deg (RV on the left). ``mirrored``: the image, its masks and its points flipped
    left-right (the other handedness: the segments must follow the patch)."""
    myo, bp, ant, inf = make_ring(center=C, r_in=12.0, r_out=20.0, rvip_deg=(120.0, 240.0))
    rr, cc = np.mgrid[:96, :96]
    ang = np.degrees(np.arctan2(-(rr - C[0]), cc - C[1])) % 360
    r = np.hypot(rr - C[0], cc - C[1])
    near = (np.abs((ang - scar_deg + 180) % 360 - 180) < 15) & myo
    patch = near & ((r < 15.0) if depth == "endo" else (r >= 17.0))
    img = np.where(myo, 0.1, 0.0).astype(np.float32)
    img[patch] = 0.95
    if mirrored:
        img, myo, bp = img[:, ::-1].copy(), myo[:, ::-1].copy(), bp[:, ::-1].copy()
        ant, inf = (ant[0], 95 - ant[1]), (inf[0], 95 - inf[1])
    aha = aha_segment_map(myo, ant, inf, level, center=C)
    layers = wall_layers(myo, bp)
    return RegionMaps(img, myo.astype(np.uint8), aha, layers, level)


@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize(("level", "screen_deg", "segment"), [
    # RV on the left (anterior RVIP upper left): from 120 deg through the septum, 60-deg sectors 2, 3, 4, 5, 6, 1
    ("basal", 270.0, 4),  # bottom: inferior
    ("basal", 210.0, 3),  # lower septum: inferoseptal
    ("mid", 330.0, 11),   # lower lateral: inferolateral
    ("apical", 0.0, 16),  # 90-deg sectors centred on the septum (180): lateral
])
def test_keep_method_finds_the_scarred_segment_for_both_handednesses(mirrored, level, screen_deg, segment):
    m = ring_slice(screen_deg, level, mirrored)
    res = localise(bright_score, [m], method="keep")[0]
    assert res["reason"] is None
    best = max(res["segments"], key=res["segments"].get)
    assert best == segment and res["segments"][best] > 0.5
    assert all(v < 0.1 for k, v in res["segments"].items() if k != segment)
    # the region images keep only that segment's wall bright
    imgs, ids = edited_images(m, "keep")
    assert len(ids) == len(res["segments"]) + 3 and imgs.shape[1:] == m.image.shape


def test_depth_questions_tell_subendocardial_from_subepicardial():
    endo = localise(bright_score, [ring_slice(270.0, depth="endo")], method="keep")[0]["depth"]
    epi = localise(bright_score, [ring_slice(270.0, depth="epi")], method="keep")[0]["depth"]
    assert endo["subendocardial"] > 0.5 > endo["subepicardial"]
    assert epi["subepicardial"] > 0.5 > epi["subendocardial"]


def test_occlusion_scores_the_drop_and_needs_the_slice_score():
    m = ring_slice(270.0)
    p = bright_score(m.image[None], [m.level])
    res = localise(bright_score, [m], p, method="occlude")[0]["segments"]
    assert max(res, key=res.get) == 4 and res[4] > 0.5 and res[1] == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="p_slice"):
        localise(bright_score, [m], method="occlude")
    with pytest.raises(ValueError, match="method"):
        edited_images(m, "blur")


def test_bright_floor_is_the_share_of_wall_above_half_way_to_the_blood_pool():
    m = ring_slice(270.0)  # inferior (segment 4), endocardial patch at 0.95 on a 0.1 wall
    cav = ~m.myocardium.astype(bool) & (np.hypot(*(np.mgrid[:96, :96] - np.array(C)[:, None, None])) < 12.0)
    m.image[cav] = 0.8  # the blood pool
    # by hand: the darkest quarter of the wall is all 0.1 (the patch is under a tenth of it), half-way to 0.8 = 0.45
    assert bright_threshold(m.image, m.myocardium) == pytest.approx(0.45, abs=1e-6)
    res = localise(bright_score, [m], [0.9], method="bright")[0]
    wall4 = (m.aha == 4) & (m.myocardium > 0)
    assert res["segments"][4] == pytest.approx(0.9 * float((m.image[wall4] > 0.45).mean()))
    assert max(res["segments"], key=res["segments"].get) == 4 and res["segments"][1] == 0.0
    assert res["depth"]["subendocardial"] > res["depth"]["subepicardial"] == 0.0
    # a wall that does not close (a gap at the top): the blood pool is the disc inside the nearest wall pixel
    open_myo = m.myocardium.copy()
    open_myo[: int(C[0]), 46:51] = 0
    assert not (ndimage.binary_fill_holes(open_myo > 0) & (open_myo == 0) & cav).any()
    assert bright_threshold(m.image, open_myo) == pytest.approx(0.45, abs=1e-6)
    # no blood pool to compare with: the rule sees nothing, every region scores 0 and the slice still counts
    solid = np.zeros_like(m.myocardium)
    solid[40:56, 40:56] = 1
    assert bright_threshold(m.image, solid) is None
    res = localise(bright_score, [RegionMaps(m.image, solid, m.aha, m.layers, "basal")], [0.9], method="bright")[0]
    assert res["reason"] is None and set(res["segments"].values()) <= {0.0}
    with pytest.raises(ValueError, match="p_slice"):
        localise(bright_score, [m], method="bright")


def test_healthy_level_and_slices_without_a_segment_map():
    m = ring_slice(270.0)
    assert healthy_level(m.image, m.myocardium) == pytest.approx(0.1)
    blind = RegionMaps(m.image, m.myocardium, np.zeros_like(m.aha), m.layers, "basal")
    res = localise(bright_score, [blind, m], method="keep")
    assert res[0]["segments"] == {} and "no AHA segment map" in res[0]["reason"] and res[1]["reason"] is None


def test_study_table_takes_the_maximum_of_each_level():
    regional = [{"segments": {4: 0.2, 1: 0.1}}, {"segments": {4: 0.7}}, {"segments": {13: 0.4}}]
    rows = study_segments(["basal", "basal", "apical"], regional)
    by = {r["segment"]: r for r in rows}
    assert len(rows) == 16 and by[4]["score"] == 0.7 and by[4]["n_slices"] == 2
    assert by[1]["score"] == 0.1 and by[13]["score"] == 0.4 and by[7]["score"] is None
    assert by[10]["name"] == "mid inferior" and by[16]["level"] == "apical"


@pytest.mark.parametrize(("x", "y", "segment"), [
    (0.0, 0.9, 1), (-0.78, 0.45, 2), (-0.78, -0.45, 3), (0.0, -0.9, 4), (0.78, -0.45, 5), (0.78, 0.45, 6),
    (0.0, 0.6, 7), (-0.55, 0.3, 8), (0.0, -0.6, 10), (0.0, 0.4, 13), (-0.4, 0.0, 14), (0.0, -0.4, 15),
    (0.4, 0.0, 16), (0.0, 0.0, 17), (1.0, 1.0, None),
])
def test_bullseye_layout_is_the_aha_plot(x, y, segment):
    """Anterior on top, septum on the left, basal ring outside, apical inside, apex in the centre."""
    assert bullseye_segment_at(x, y) == segment


def test_bullseye_draws_a_known_segment_where_the_aha_plot_has_it():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(3, 3), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    plot_bullseye(ax, {3: 1.0, **{s: 0.0 for s in range(1, 17) if s != 3}}, cmap="gray")
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    plt.close(fig)

    def pixel(x: float, y: float) -> float:  # data (-1.05..1.05, y up) -> image pixel brightness
        col = int((x + 1.05) / 2.1 * rgb.shape[1])
        row = int((1.05 - y) / 2.1 * rgb.shape[0])
        return float(rgb[row, col].mean())

    r0, r1, t1, t2 = bullseye_wedge(3)
    rm, tm = (r0 + r1) / 2, np.radians((t1 + t2) / 2 + 10)  # off the label in the wedge's middle
    assert pixel(rm * np.cos(tm), rm * np.sin(tm)) > 200  # segment 3 (basal inferoseptal, lower left): white
    assert pixel(-rm * np.cos(tm), rm * np.sin(tm)) < 60  # its mirror across the vertical (5, lateral): black
    assert pixel(0.0, 0.0) == pytest.approx(204, abs=3)  # the apex (17) is not scored: grey


def test_band_reaches_scar_the_segmentation_gave_to_the_blood_pool():
    """Bright subendocardial scar segmented as blood pool: the regions drawn on the mask alone cannot see it; a band
    of a few pixels around the wall (each pixel in the segment and third of its nearest wall pixel) does."""
    m = ring_slice(270.0)
    myo = m.myocardium.astype(bool)
    rr, cc = np.mgrid[:96, :96]
    r = np.hypot(rr - C[0], cc - C[1])
    ang = np.degrees(np.arctan2(-(rr - C[0]), cc - C[1])) % 360
    img = np.where(myo, 0.1, 0.0).astype(np.float32)
    img[(r >= 9.5) & (r < 12.0) & (np.abs(ang - 270.0) < 15)] = 0.95  # just inside the cavity, below the wall
    blind = RegionMaps(img, m.myocardium, m.aha, m.layers, "basal", band_px=0.0)
    seeing = RegionMaps(img, m.myocardium, m.aha, m.layers, "basal", band_px=3.0)
    assert min(localise(bright_score, [blind], method="keep")[0]["segments"].values()) > 0.5  # all still see it
    p = bright_score(img[None], ["basal"])
    assert max(localise(bright_score, [blind], p, method="occlude")[0]["segments"].values()) < 0.1  # none removes it
    assert max(localise(bright_score, [seeing], p, method="occlude")[0]["segments"].values()) > 0.5
    res = localise(bright_score, [seeing], method="keep")[0]
    assert max(res["segments"], key=res["segments"].get) == 4
    assert all(v < 0.1 for k, v in res["segments"].items() if k != 4)
    assert res["depth"]["subendocardial"] > 0.5 > res["depth"]["subepicardial"]  # the cavity side is endocardial
    wall, aha, layers = seeing.wall
    assert wall.sum() > myo.sum() and set(np.unique(aha[wall])) == {1, 2, 3, 4, 5, 6}
