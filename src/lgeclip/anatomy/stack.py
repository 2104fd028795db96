"""Stack-consistent RV insertion points: the RVIPs of neighbouring short-axis slices of one stack sit at nearly
the same angle about the LV centre (held-out ACDC: median 8.6 / 4.6 degrees between neighbours), so a slice whose
predicted RVIP points far from the angle its plausible neighbours agree on is more likely wrong than they are.

``stack_consistent_rvips`` re-places such points: at the circular median angle of the nearest plausible slices
of the same stack, on the outer edge of the slice's own predicted myocardium along that ray. It uses only the
nets' own predictions (no truth, no label), so it runs wherever a whole stack is predicted together (preprocessing
of a cohort, ``predict`` on a series).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from lgeclip.anatomy.types import AnatomyResult


def _wrap(a: np.ndarray | float) -> np.ndarray | float:
    """Angle difference wrapped to (-pi, pi]."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def circular_median(angles: Sequence[float]) -> float:
    """The sample angle (radians) with the least summed absolute circular distance to the others."""
    a = np.asarray(angles, float)
    if a.size == 0:
        raise ValueError("circular_median of no angles")
    cost = np.abs(_wrap(a[:, None] - a[None, :])).sum(axis=1)
    return float(a[int(np.argmin(cost))])


def _angles(res: AnatomyResult, sp: np.ndarray) -> np.ndarray:
    """Angles (radians) of the two RVIPs about the LV centre, in millimetres (row, col scaled by spacing)."""
    v = (res.rvip.astype(float) - np.asarray(res.lv_center, float)) * sp
    return np.arctan2(v[:, 0], v[:, 1])


def edge_point(res: AnatomyResult, sp: np.ndarray, angle: float, step_mm: float = 0.25,
               max_mm: float = 80.0) -> tuple[float, float] | None:
    """The point where a ray from the LV centre at ``angle`` (mm frame) last leaves the predicted myocardium
    (native pixels; None when the ray never crosses it)."""
    c = np.asarray(res.lv_center, float)
    r = np.arange(0.0, max_mm, step_mm)
    pts = c + np.stack([np.sin(angle) * r / sp[0], np.cos(angle) * r / sp[1]], axis=1)
    ij = np.round(pts).astype(int)
    h, w = res.myocardium.shape
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
    hit = np.zeros(len(r), bool)
    hit[inside] = res.myocardium[ij[inside, 0], ij[inside, 1]] > 0
    if not hit.any():
        return None
    k = int(np.nonzero(hit)[0][-1])
    return float(pts[k, 0]), float(pts[k, 1])


def stack_consistent_rvips(results: Sequence[AnatomyResult | None], spacings: Sequence, stacks: Sequence,
                           positions: Sequence[float], plausible: Sequence[bool], max_dev_deg: float = 45.0,
                           n_ref: int = 4, min_ref: int = 2) -> tuple[list[AnatomyResult | None], list[str]]:
    """RVIPs made consistent along each stack; returns (results, what changed per slice: "" or a note).

    ``stacks``: a stack id per slice (e.g. patient key + frame); ``positions``: slice position along the stack;
    ``plausible``: whether the slice passed the plausibility checks as predicted. For every slice, the reference
    angle of each RVIP is the circular median over its ``n_ref`` nearest plausible slices of the same stack (not
    itself), used only when more than half of them and at least ``min_ref`` lie within ``max_dev_deg`` of it
    (else the point is left as it is). A point more than ``max_dev_deg``
    from its reference moves to the reference angle; an implausible slice also has its other point put on the
    myocardium's outer edge along its own angle. Moved points sit where that ray last leaves the slice's
    predicted myocardium. The caller re-checks plausibility afterwards."""
    n = len(results)
    if not (len(spacings) == len(stacks) == len(positions) == len(plausible) == n):
        raise ValueError("results, spacings, stacks, positions and plausible must have one entry per slice")
    sps = [np.array([float(np.ravel(s)[0]), float(np.ravel(s)[-1])]) for s in spacings]
    ang = [(_angles(r, sp) if r is not None and r.has_rvip else None) for r, sp in zip(results, sps, strict=True)]
    out: list[AnatomyResult | None] = list(results)
    notes = [""] * n
    max_dev = np.deg2rad(max_dev_deg)
    for i, res in enumerate(results):
        if res is None or ang[i] is None:
            continue
        refs = [j for j in range(n) if j != i and stacks[j] == stacks[i] and plausible[j] and ang[j] is not None]
        if len(refs) < min_ref:
            continue
        refs = sorted(refs, key=lambda j: (abs(float(positions[j]) - float(positions[i])), j))[:n_ref]
        pts = res.rvip.astype(float).copy()
        moved = []
        for k, name in enumerate(("anterior", "inferior")):
            ref_angles = np.array([ang[j][k] for j in refs])
            ref = circular_median(ref_angles)
            support = int((np.abs(_wrap(ref_angles - ref)) <= max_dev).sum())
            if support < min_ref or 2 * support <= len(refs):
                continue  # the references disagree among themselves: no angle to trust
            dev = abs(float(_wrap(ang[i][k] - ref)))
            target = ref if dev > max_dev else (ang[i][k] if not plausible[i] else None)
            if target is None:
                continue
            p = edge_point(res, sps[i], target)
            if p is None:
                continue
            pts[k] = p
            moved.append(f"{name} {np.rad2deg(dev):.0f} deg off" if dev > max_dev else f"{name} onto the wall")
        if moved:
            out[i] = replace(res, anterior_rvip=tuple(pts[0]), inferior_rvip=tuple(pts[1]))
            notes[i] = "; ".join(moved)
    return out, notes
