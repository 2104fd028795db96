"""AHA segment map and wall words."""

from __future__ import annotations

import numpy as np
import pytest
from test_geometry import make_ring, point_at

from lgeclip.anatomy.aha import WALL_WORDS, aha_segment_map, aha_segments

CENTER = (48.0, 48.0)


def _seg_at(seg: np.ndarray, angle_deg: float, radius: float = 16.0) -> int:
    r, c = point_at(CENTER, radius, angle_deg)
    return int(seg[int(round(r)), int(round(c))])


@pytest.mark.parametrize("level", ["basal", "mid", "apical"])
def test_segments_partition_myocardium(level):
    myo, bp, ant, inf = make_ring(center=CENTER, rvip_deg=(115.0, 250.0))
    seg = aha_segment_map(myo, ant, inf, level)
    assert seg.dtype == np.uint8
    assert np.all(seg[~myo] == 0)
    assert np.all(seg[myo] > 0)
    expected = {"basal": set(range(1, 7)), "mid": set(range(7, 13)), "apical": set(range(13, 17))}[level]
    assert set(np.unique(seg[myo]).tolist()) == expected


def test_standard_view_segments():
    # anterior RVIP upper-left (120 deg), inferior RVIP lower-left (240 deg): septum on the image left (180 deg)
    myo, bp, ant, inf = make_ring(center=CENTER, rvip_deg=(120.0, 240.0))
    basal = aha_segment_map(myo, ant, inf, "basal", blood_pool=bp)
    mid = aha_segment_map(myo, ant, inf, "mid")
    apical = aha_segment_map(myo, ant, inf, "apical")
    for angle, seg in [(150, 2), (210, 3), (270, 4), (330, 5), (30, 6), (90, 1)]:
        assert _seg_at(basal, angle) == seg, angle
        assert _seg_at(mid, angle) == seg + 6, angle
    for angle, seg in [(180, 14), (150, 14), (270, 15), (0, 16), (90, 13)]:
        assert _seg_at(apical, angle) == seg, angle


def test_midway_septum_asymmetric_rvips():
    # RVIPs 140 deg apart: midway through the septum (170 deg) is 70 deg from the anterior RVIP -> inferoseptal
    myo, _, ant, inf = make_ring(center=CENTER, rvip_deg=(100.0, 240.0))
    assert _seg_at(aha_segment_map(myo, ant, inf, "basal"), 170) == 3
    assert _seg_at(aha_segment_map(myo, ant, inf, "mid"), 170) == 9
    assert _seg_at(aha_segment_map(myo, ant, inf, "apical"), 170) == 14
    # apical septal sector is centred on the bisector (170): 170 +- 40 is septal, 170 +- 50 is not
    ap = aha_segment_map(myo, ant, inf, "apical")
    assert _seg_at(ap, 130) == 14 and _seg_at(ap, 210) == 14
    assert _seg_at(ap, 120) == 13 and _seg_at(ap, 220) == 15


@pytest.mark.parametrize("level", ["basal", "mid", "apical"])
def test_mirrored_image_gives_mirrored_segments(level):
    myo, bp, ant, inf = make_ring(center=(40.0, 52.0), shape=(90, 100), rvip_deg=(110.0, 235.0))
    w = myo.shape[1]
    seg = aha_segment_map(myo, ant, inf, level)
    flip = lambda p: (p[0], w - 1 - p[1])  # noqa: E731
    seg_m = aha_segment_map(myo[:, ::-1], flip(ant), flip(inf), level)
    agree = (seg_m == seg[:, ::-1]).mean()
    assert agree == 1.0
    # and it is not just symmetric: the unmirrored points on the mirrored image give other labels
    wrong = aha_segment_map(myo[:, ::-1], ant, inf, level)
    assert (wrong != seg[:, ::-1]).any()


def test_rotation_direction_follows_rvips():
    # septum on the right (anterior RVIP upper-right, inferior lower-right)
    myo, _, ant, inf = make_ring(center=CENTER, rvip_deg=(60.0, 300.0))
    seg = aha_segment_map(myo, ant, inf, "basal")
    for angle, expected in [(30, 2), (330, 3), (270, 4), (210, 5), (150, 6), (90, 1)]:
        assert _seg_at(seg, angle) == expected, angle


def test_bad_rvips_raise():
    myo, _, ant, _ = make_ring(center=CENTER)
    with pytest.raises(ValueError, match="same direction"):
        aha_segment_map(myo, ant, ant, "basal")
    with pytest.raises(ValueError, match="level"):
        aha_segment_map(myo, ant, (10.0, 10.0), "apex")


@pytest.mark.parametrize("wall,level,expected", [
    ("inferoseptal", "basal", [3]), ("inferoseptal", "mid", [9]), ("septal", "basal", [2, 3]),
    ("septal", "apical", [14]), ("lateral", "basal", [5, 6]), ("lateral", "mid", [11, 12]),
    ("lateral", "apical", [16]), ("posterior", "basal", [5]), ("anterior", "apical", [13]),
    ("anteroseptal", "apical", [13, 14]), ("anterior", "basal", [1]), ("inferior", "mid", [10]),
    ("inferior-lateral", "basal", [5]), ("infero-lateral", "mid", [11]), ("Inferior Septal", "basal", [3]),
    ("anterolateral", "basal", [6]), ("posterolateral", "basal", [5]), ("septum", "mid", [8, 9]),
    ("anterior and septal", "basal", [1, 2, 3]), ("inferior/inferolateral", "apical", [15, 16]),
])
def test_wall_words(wall, level, expected):
    assert aha_segments(wall, level) == expected


def test_every_wall_word_maps_at_every_level():
    for w in WALL_WORDS:
        for lv, lo, hi in (("basal", 1, 6), ("mid", 7, 12), ("apical", 13, 16)):
            segs = aha_segments(w, lv)
            assert segs and all(lo <= s <= hi for s in segs), (w, lv)


def test_unknown_wall_word_is_named():
    with pytest.raises(ValueError, match="apicolateral"):
        aha_segments("apicolateral", "basal")
    with pytest.raises(ValueError, match="level"):
        aha_segments("anterior", "base")
