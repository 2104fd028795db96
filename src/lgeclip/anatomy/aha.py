"""AHA 17-segment model on short-axis slices: a segment map from the RV insertion points, and wall words.

Segment map (``aha_segment_map``): angles are measured about the LV centre. The rotational direction is the one
that goes from the anterior RVIP to the inferior RVIP *through the septum* (the shorter arc between the two
RVIPs), so the map is right for either image handedness: mirroring the image and the points mirrors the segments.

- basal / mid: six 60 deg sectors starting at the anterior RVIP and running in that direction:
  anteroseptal (2 / 8), inferoseptal (3 / 9), inferior (4 / 10), inferolateral (5 / 11), anterolateral (6 / 12),
  anterior (1 / 7) (the last one ends back at the anterior RVIP).
- apical: four 90 deg sectors; the septal sector (14) is centred on the bisector of the two RVIPs (the middle of
  the septal arc), then, in the same direction, inferior (15), lateral (16) and anterior (13).

Wall words (``aha_segments``), basal numbers (mid = basal + 6) and apical numbers:

=================================================  =============  ========
wall word                                          basal (mid+6)  apical
=================================================  =============  ========
anterior                                           1              13
anteroseptal                                       2              13, 14
septal (septum)                                    2, 3           14
inferoseptal                                       3              14, 15
inferior                                           4              15
inferolateral, posterior, posterolateral           5              15, 16
lateral                                            5, 6           16
anterolateral                                      6              13, 16
=================================================  =============  ========

"posterior" and "posterolateral" are the pre-2002 names of the inferolateral wall (AHA 2002 statement) and map
to it. Compounds may be written as one word ("inferolateral"), hyphenated or spaced with a combining form or an
adjective ("infero-lateral", "inferior-lateral", "inferior lateral"); lists joined by "and", ",", "/" or "+"
("anterior and septal") give the union of their parts. Unknown words raise ValueError naming them.
"""

from __future__ import annotations

import re

import numpy as np

from lgeclip.anatomy.geometry import lv_center

LEVELS = ("basal", "mid", "apical")

# canonical wall word -> (basal segments, apical segments); mid = basal + 6
_WALLS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "anterior": ((1,), (13,)),
    "anteroseptal": ((2,), (13, 14)),
    "septal": ((2, 3), (14,)),
    "inferoseptal": ((3,), (14, 15)),
    "inferior": ((4,), (15,)),
    "inferolateral": ((5,), (15, 16)),
    "posterior": ((5,), (15, 16)),
    "posterolateral": ((5,), (15, 16)),
    "lateral": ((5, 6), (16,)),
    "anterolateral": ((6,), (13, 16)),
}
WALL_WORDS: tuple[str, ...] = tuple(_WALLS)

_SYNONYMS = {"septum": "septal", "inferoposterior": "inferolateral", "posteroinferior": "inferolateral"}
# first part of a two-part compound -> combining form
_PREFIX = {"anterior": "antero", "antero": "antero", "inferior": "infero", "infero": "infero",
           "posterior": "postero", "postero": "postero"}
_SECOND = {"septal": "septal", "septum": "septal", "lateral": "lateral"}

# basal/mid sector index (60 deg steps from the anterior RVIP towards the septum) -> basal segment number
_BASAL_SECTORS = np.array([2, 3, 4, 5, 6, 1], dtype=np.uint8)
# apical sector index (90 deg steps, sector 0 centred on the septal bisector) -> segment number
_APICAL_SECTORS = np.array([14, 15, 16, 13], dtype=np.uint8)


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"level {level!r} not in {LEVELS}")
    return level


def _one_wall(word: str, original: str) -> str:
    w = word.strip()
    if w in _WALLS:
        return w
    if w in _SYNONYMS:
        return _SYNONYMS[w]
    parts = [p for p in re.split(r"[\s\-_]+", w) if p]
    if len(parts) == 2 and parts[0] in _PREFIX and parts[1] in _SECOND:
        cand = _PREFIX[parts[0]] + _SECOND[parts[1]]
        if cand in _WALLS:
            return cand
    if len(parts) == 2 and parts[0] in _PREFIX and parts[1] in _PREFIX:  # e.g. "inferior-posterior"
        cand = _PREFIX[parts[0]] + parts[1]
        if cand in _SYNONYMS:
            return _SYNONYMS[cand]
    if len(parts) == 1 and parts[0] in _WALLS:
        return parts[0]
    raise ValueError(f"unknown wall word {word.strip()!r} in {original!r}; known: {', '.join(WALL_WORDS)}")


def aha_segments(wall: str, level: str) -> list[int]:
    """AHA segment numbers (sorted) of a wall word at a level (basal / mid / apical); see the module table."""
    _check_level(level)
    text = str(wall).lower().strip()
    if not text:
        raise ValueError(f"empty wall word {wall!r}")
    pieces = [p for p in re.split(r"\s*(?:,|/|\+|&|\band\b)\s*", text) if p.strip()]
    out: set[int] = set()
    for p in pieces:
        basal, apical = _WALLS[_one_wall(p, str(wall))]
        if level == "apical":
            out.update(apical)
        else:
            out.update(s + (6 if level == "mid" else 0) for s in basal)
    return sorted(out)


def _angle(pt: np.ndarray, center: np.ndarray) -> float:
    d = np.asarray(pt, float) - center
    return float(np.arctan2(d[1], d[0]))  # angle of (row, col) vector; direction convention irrelevant below


def septal_direction(center: tuple[float, float], anterior_rvip: tuple[float, float],
                     inferior_rvip: tuple[float, float]) -> tuple[float, float, float]:
    """(start angle, sign, septal arc) in radians: the anterior RVIP angle, +1/-1 for the rotational direction
    towards the inferior RVIP through the septum (shorter arc), and the arc length between the RVIPs."""
    c = np.asarray(center, float)
    a_ant, a_inf = _angle(anterior_rvip, c), _angle(inferior_rvip, c)
    for name, p in (("anterior", anterior_rvip), ("inferior", inferior_rvip)):
        if not np.all(np.isfinite(p)) or np.hypot(*(np.asarray(p, float) - c)) < 1e-6:
            raise ValueError(f"{name} RVIP {tuple(p)} is not finite or coincides with the LV centre {tuple(c)}")
    delta = (a_inf - a_ant + np.pi) % (2 * np.pi) - np.pi  # in [-pi, pi)
    if abs(delta) < 1e-6:
        raise ValueError(f"RVIPs {tuple(anterior_rvip)} and {tuple(inferior_rvip)} lie in the same direction")
    return a_ant, (1.0 if delta > 0 else -1.0), abs(delta)


def aha_segment_map(myocardium: np.ndarray, anterior_rvip: tuple[float, float], inferior_rvip: tuple[float, float],
                    level: str, center: tuple[float, float] | None = None,
                    blood_pool: np.ndarray | None = None) -> np.ndarray:
    """AHA segment numbers, uint8 (H, W), inside the myocardium (0 outside); points (row, col) in pixels.

    ``center`` defaults to ``lv_center(myocardium, blood_pool)``. See the module docstring for the sectors."""
    _check_level(level)
    myo = np.asarray(myocardium) > 0
    out = np.zeros(myo.shape, dtype=np.uint8)
    if not myo.any():
        return out
    c = np.asarray(lv_center(myo, blood_pool) if center is None else center, float)
    a_ant, sign, arc = septal_direction(tuple(c), anterior_rvip, inferior_rvip)
    rr, cc = np.nonzero(myo)
    theta = np.arctan2(cc - c[1], rr - c[0])
    two_pi = 2 * np.pi
    if level == "apical":
        rel = (sign * (theta - a_ant) - arc / 2 + np.pi / 4) % two_pi  # 0 at the start of the septal sector
        idx = np.minimum((rel / (np.pi / 2)).astype(int), 3)
        seg = _APICAL_SECTORS[idx]
    else:
        rel = (sign * (theta - a_ant)) % two_pi
        idx = np.minimum((rel / (np.pi / 3)).astype(int), 5)
        seg = _BASAL_SECTORS[idx] + (6 if level == "mid" else 0)
    out[rr, cc] = seg
    return out
