"""Stack-consistent RVIPs (``lgeclip.anatomy.stack``) on hand-made rings with known angles."""

from __future__ import annotations

import numpy as np
import pytest

from lgeclip.anatomy.stack import circular_median, edge_point, stack_consistent_rvips
from lgeclip.anatomy.types import AnatomyResult

C, R_IN, R_OUT = 40.0, 10.0, 16.0


def _ring(ant_deg: float, inf_deg: float, radius: float = R_OUT - 0.5) -> AnatomyResult:
    rr, cc = np.mgrid[:80, :80]
    d = np.hypot(rr - C, cc - C)
    myo, pool = (d >= R_IN) & (d < R_OUT), d < R_IN

    def pt(deg, r=radius):
        a = np.deg2rad(deg)
        return C + r * np.sin(a), C + r * np.cos(a)

    return AnatomyResult(myo, pool, pt(ant_deg), pt(inf_deg), lv_center=(C, C))


def _deg(res: AnatomyResult, k: int) -> float:
    v = res.rvip[k] - np.asarray(res.lv_center)
    return float(np.rad2deg(np.arctan2(v[0], v[1])) % 360)


def test_circular_median_wraps_around_zero():
    assert circular_median(np.deg2rad([350, 358, 10, 15, 100])) == pytest.approx(np.deg2rad(10))  # -10 -2 10 15 100
    with pytest.raises(ValueError):
        circular_median([])


def test_edge_point_is_where_the_ray_leaves_the_wall():
    p = edge_point(_ring(0, 90), np.array([1.0, 1.0]), np.deg2rad(90))
    assert p is not None and np.hypot(p[0] - C, p[1] - C) == pytest.approx(R_OUT - 0.5, abs=1.0)
    assert p[0] > C and abs(p[1] - C) < 0.5  # +90 deg = down the rows
    assert edge_point(AnatomyResult(np.zeros((80, 80)), np.zeros((80, 80)), (1, 1), (2, 2), lv_center=(C, C)),
                      np.array([1.0, 1.0]), 0.0) is None


def test_an_outlier_moves_to_its_neighbours_angle_and_the_rest_stays():
    sp = [(1.0, 1.0)] * 7
    res = [_ring(120 + d, 240 - d) for d in (0, 5, -5, 3)] + [_ring(300, 242)]  # slice 4: anterior 180 deg off
    res += [_ring(60, 200, radius=12.0), _ring(10, 100)]  # another stack: too few references, left alone
    stacks = ["a"] * 5 + ["b"] * 2
    ok = [True] * 4 + [False, False, True]
    new, notes = stack_consistent_rvips(res, sp, stacks, [0, 1, 2, 3, 4, 0, 1], ok, max_dev_deg=45)
    assert notes[:4] == [""] * 4 and all(new[i] is res[i] for i in range(4))
    assert notes[4].startswith("anterior 1") and "inferior onto the wall" in notes[4]
    assert _deg(new[4], 0) == pytest.approx(123, abs=2.5)  # the median of its nearest plausible slices (3, 2, 1, 0)
    assert _deg(new[4], 1) == pytest.approx(242, abs=2.5)  # kept its own angle, now on the wall's outer edge
    for k in range(2):
        assert np.hypot(*(new[4].rvip[k] - C)) == pytest.approx(R_OUT - 0.5, abs=1.0)
    assert new[5] is res[5] and new[6] is res[6] and notes[5:] == ["", ""]
    with pytest.raises(ValueError, match="one entry per slice"):
        stack_consistent_rvips(res, sp, stacks, [0] * 7, ok[:-1])
