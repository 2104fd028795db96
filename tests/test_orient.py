"""Orientation normalisation and anatomy result types."""

from __future__ import annotations

import numpy as np
import pytest
from test_geometry import make_ring

from lgeclip.anatomy import AnatomyResult, OracleAnatomy, OrientTransform, normalise_orientation
from lgeclip.anatomy.aha import aha_segment_map


@pytest.mark.parametrize("rvip_deg", [(120.0, 240.0), (60.0, 300.0), (10.0, 130.0), (200.0, 330.0), (95, 85)])
def test_anterior_rvip_ends_up_directly_above(rvip_deg):
    myo, bp, ant, inf = make_ring(center=(45.2, 50.7), shape=(90, 100), rvip_deg=rvip_deg)
    rot, t = normalise_orientation(myo.astype(np.float32), (45.2, 50.7), ant, inf)
    a, i = t.apply_points(np.array([ant, inf]))
    assert abs(a[1] - i[1]) < 0.5 and a[0] < i[0]
    assert np.allclose(t.apply_points(np.array([[45.2, 50.7]])), [[45.2, 50.7]])
    assert rot.shape == myo.shape


def test_points_roundtrip_and_dict():
    t = OrientTransform(angle=37.3, centre=(31.5, 40.25), shape=(64, 80))
    pts = np.random.default_rng(0).uniform(0, 64, size=(50, 2))
    assert np.abs(t.inverse_points(t.apply_points(pts)) - pts).max() < 1e-6
    t2 = OrientTransform.from_dict(t.to_dict())
    assert t2 == t
    assert np.abs(t2.apply_points(pts) - t.apply_points(pts)).max() < 1e-9


def test_image_roundtrip_interior_and_points_follow_image():
    rr, cc = np.mgrid[:96, :96]
    img = (np.sin(rr / 7.0) + np.cos(cc / 5.0) + 3.0).astype(np.float32)  # smooth
    myo, bp, ant, inf = make_ring(rvip_deg=(100.0, 230.0))
    rot, t = normalise_orientation(img, (48.0, 48.0), ant, inf)
    back = t.inverse_image(rot)
    inner = np.hypot(rr - 48, cc - 48) < 40
    assert np.abs(back - img)[inner].max() < 0.05
    # a bright dot moves where apply_points says
    dot = np.zeros((96, 96), np.float32)
    dot[30, 60] = 1.0
    rdot = t.apply_image(dot)
    com = np.array(np.unravel_index(np.argmax(rdot), rdot.shape), float)
    assert np.abs(com - t.apply_points(np.array([[30.0, 60.0]]))[0]).max() <= 1.0


def test_label_maps_nearest_keep_labels():
    myo, bp, ant, inf = make_ring(rvip_deg=(100.0, 230.0))
    seg = aha_segment_map(myo, ant, inf, "basal")
    rot, t = normalise_orientation(seg, (48.0, 48.0), ant, inf, order=0)
    assert rot.dtype == np.uint8 and set(np.unique(rot)) <= set(range(7))
    # the rotated map equals the map computed from rotated mask + rotated RVIPs (apart from boundary pixels)
    a, i = t.apply_points(np.array([ant, inf]))
    rmyo = t.apply_image(myo.astype(np.uint8), order=0)
    seg2 = aha_segment_map(rmyo, tuple(a), tuple(i), "basal", center=(48.0, 48.0))
    both = (rot > 0) & (seg2 > 0)
    assert (rot[both] == seg2[both]).mean() > 0.95


def test_bad_points_raise():
    with pytest.raises(ValueError, match="coincide"):
        normalise_orientation(np.zeros((8, 8)), (4, 4), (1.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError):
        normalise_orientation(np.zeros((8, 8)), (4, 4), (np.nan, 1.0), (1.0, 1.0))


def test_anatomy_result_and_oracle():
    myo, bp, ant, inf = make_ring(center=(40.0, 44.0))
    res = AnatomyResult(myo, bp, ant, inf)
    assert res.myocardium.dtype == np.uint8 and res.has_rvip
    assert abs(res.lv_center[0] - 40.0) < 0.2 and abs(res.lv_center[1] - 44.0) < 0.2
    arrays = {"image": np.zeros(myo.shape, np.float32), "myocardium": myo.astype(np.uint8),
              "blood_pool": bp.astype(np.uint8), "rvip": np.array([ant, inf], np.float32)}
    o = OracleAnatomy.from_slice(arrays)
    assert np.allclose(o.rvip, res.rvip) and o.myocardium.sum() == myo.sum()
    arrays["rvip"] = np.full((2, 2), np.nan, np.float32)
    with pytest.raises(ValueError, match="pt-x.*rvip"):
        OracleAnatomy.from_slice(arrays, slice_id="pt-x_00_mid")
    nan_rvip = OracleAnatomy.from_slice(arrays, allow_missing_rvip=True)  # a cohort without RV labels (EMIDEC)
    assert not nan_rvip.has_rvip and nan_rvip.myocardium.sum() == myo.sum()
    del arrays["rvip"]
    with pytest.raises(ValueError, match="rvip"):
        OracleAnatomy.from_slice(arrays)
    assert not OracleAnatomy.from_slice(arrays, allow_missing_rvip=True).has_rvip
    del arrays["blood_pool"]
    with pytest.raises(ValueError, match="blood_pool"):
        OracleAnatomy.from_slice(arrays, allow_missing_rvip=True)
