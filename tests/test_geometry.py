"""Pure geometry on synthetic rings: LV centre, depth, thickness, layers. Also hosts the ring helper."""

from __future__ import annotations

import numpy as np
import pytest

from lgeclip.anatomy.geometry import lv_center, myocardium_area_mm2, transmural_depth, wall_layers, wall_thickness


def point_at(center: tuple[float, float], radius: float, angle_deg: float) -> tuple[float, float]:
    """(row, col) at ``radius`` px and ``angle_deg`` counter-clockwise from the +col axis as displayed (row down)."""
    a = np.deg2rad(angle_deg)
    return center[0] - radius * np.sin(a), center[1] + radius * np.cos(a)


def make_ring(shape: tuple[int, int] = (96, 96), center: tuple[float, float] = (48.0, 48.0), r_in: float = 12.0,
              r_out: float = 20.0, rvip_deg: tuple[float, float] = (120.0, 240.0)):
    """Annulus myocardium (r_in <= r < r_out), blood pool (r < r_in), RVIPs on the epicardium at the given angles.

    Returns (myocardium bool, blood_pool bool, anterior_rvip, inferior_rvip)."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(rr - center[0], cc - center[1])
    myo = (r >= r_in) & (r < r_out)
    bp = r < r_in
    return myo, bp, point_at(center, r_out, rvip_deg[0]), point_at(center, r_out, rvip_deg[1])


def test_lv_center_from_blood_pool_and_hole():
    myo, bp, _, _ = make_ring(center=(40.3, 51.7))
    for c in (lv_center(myo, bp), lv_center(myo), lv_center(myo.astype(np.uint8), None)):
        assert abs(c[0] - 40.3) < 0.2 and abs(c[1] - 51.7) < 0.2
    with pytest.raises(ValueError):
        lv_center(np.zeros((10, 10), bool))


@pytest.mark.parametrize("spacing,r_in,r_out", [(1.0, 12.0, 20.0), (0.5, 20.0, 34.0), ((1.5, 1.5), 8.0, 13.0)])
def test_thickness_of_annulus(spacing, r_in, r_out):
    myo, bp, _, _ = make_ring(r_in=r_in, r_out=r_out)
    th = wall_thickness(myo, bp, spacing_mm=spacing)
    sp = float(np.mean(spacing))
    expected = (r_out - r_in) * sp
    assert th.dtype == np.float32
    assert np.all(th[~myo] == 0)
    med = float(np.median(th[myo]))
    assert abs(med - expected) < 0.1 * expected + 0.5 * sp, (med, expected)
    assert np.percentile(np.abs(th[myo] - expected), 90) < 0.2 * expected + sp
    # no blood pool given: the filled hole is used, same answer
    assert np.allclose(wall_thickness(myo, None, spacing_mm=spacing), th)


def test_thickness_follows_a_thick_segment():
    myo, bp, _, _ = make_ring(r_in=12, r_out=18)
    rr, cc = np.mgrid[:96, :96]
    r = np.hypot(rr - 48, cc - 48)
    thick = myo | ((r >= 12) & (r < 26) & (cc > 60))  # lateral wall 14 px thick
    th = wall_thickness(thick, bp)
    assert th[48, 48 + 19] > 11 and th[48, 48 - 15] < 8


def test_depth_monotone_endo_to_epi():
    myo, bp, _, _ = make_ring(r_in=10, r_out=22)
    depth = transmural_depth(myo, bp)
    assert depth.dtype == np.float32 and np.all(depth[~myo] == 0)
    assert depth[myo].min() >= 0 and depth[myo].max() <= 1
    for ray in (depth[48, 48 + 10: 48 + 22], depth[48 - 10: 48 - 22: -1, 48]):
        assert np.all(np.diff(ray) > 0), ray
        assert ray[0] < 0.1 and ray[-1] > 0.9


def test_layers_partition_and_order():
    myo, bp, _, _ = make_ring(r_in=10, r_out=22)
    layers = wall_layers(myo, bp)
    assert layers.dtype == np.uint8
    assert np.all(layers[~myo] == 0) and np.all(np.isin(layers[myo], [1, 2, 3]))
    ray = layers[48, 48 + 10: 48 + 22]
    assert list(ray) == sorted(ray) and ray[0] == 1 and ray[-1] == 3 and 2 in ray
    counts = np.bincount(layers[myo], minlength=4)[1:]
    assert counts.min() > 0.2 * counts.sum()


def test_no_cavity_raises():
    myo = np.zeros((20, 20), bool)
    myo[5:10, 5:10] = True
    with pytest.raises(ValueError, match="cavity"):
        transmural_depth(myo, None)


def test_area():
    myo, _, _, _ = make_ring(r_in=10, r_out=20)
    assert abs(myocardium_area_mm2(myo, 0.5) - np.pi * 300 * 0.25) < 0.03 * np.pi * 300 * 0.25
