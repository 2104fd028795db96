"""Where the scar is: a score per AHA segment and per wall third of a scored slice, the 16-segment study table,
and the bullseye.

The slice model answers one question per image. Asked of edited copies of the slice it answers regional ones:

- ``occlude`` (default, ``DEFAULT_METHOD``): the region is set to the slice's healthy-wall level (the 25th
  percentile of its myocardium: LGE nulls healthy myocardium); the region's score is how far P(LGE) falls,
  max(0, P(slice) - P(occluded)) (Zeiler & Fergus' occlusion; at most P(slice), not a probability of its own).
- ``keep``: every wall pixel outside the region is set to that level, so the only enhancement left to see is the
  region's; the score is the model's P(LGE) for that image.
Both read the slice rule unchanged (the paper's prompt pair for zero-shot runs, the sigmoid for image-only runs).
- ``bright``: a training-free floor, not learned: the model says whether (P(LGE)), the image's own intensities say
  where: the share of the region's myocardium brighter than half-way from the darkest quarter of the slice's wall to
  its blood pool (the rule that separates EMIDEC infarct slices with AUROC 0.86 on the expert wall), times P(LGE).
  It reads the myocardium mask only (no band: blood is bright too).

Regions are the AHA segments of the slice's level (``aha`` map of the variant the model reads: oriented when the
run was trained with orientation normalisation) and the three wall thirds (``layers``: 1 endo, 2 mid, 3 epi),
which answer "how deep", each widened by a band around the myocardium mask (``RegionMaps.band_px``). A study's
16-segment table takes, per segment, the maximum over the scored slices of its level. Slices without a segment
map (RVIPs failed, ``rvip_fallback``) get no regional answer, with the reason.

Bullseye: the AHA 17-segment plot convention (Cerqueira et al., Circulation 2002): basal ring outside, apical
inside, apex (17, not scored from short-axis slices) in the centre; anterior on top, septum on the left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

SEGMENT_NAMES: dict[int, str] = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral",
    7: "mid anterior", 8: "mid anteroseptal", 9: "mid inferoseptal", 10: "mid inferior",
    11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral", 17: "apex",
}
LEVEL_SEGMENTS: dict[str, tuple[int, ...]] = {"basal": tuple(range(1, 7)), "mid": tuple(range(7, 13)),
                                              "apical": tuple(range(13, 17))}
DEPTHS: dict[int, str] = {1: "subendocardial", 2: "mid-wall", 3: "subepicardial"}
EDIT_METHODS = ("keep", "occlude")  # ask the slice model about edited copies of the slice
METHODS = (*EDIT_METHODS, "bright")
# the defaults of predict, chosen on validation patients with the demo's zero-shot runs (segment AUROC over all
# (slice, segment) pairs): the band at stop 21 (occlude, band 0 / 2 / 4 mm on the phantom: 0.93-0.94 against keep
# 0.76), the method at stop 23: bright 0.918 vs occlude 0.830 on the phantom's 12 validation patients, 0.624 vs
# 0.564 on EMIDEC's 7 (README)
DEFAULT_METHOD = "bright"
BAND_MM = 2.0  # regions reach this far beyond the myocardium mask (RegionMaps.band_px)
# what a segment's score means, per method (prediction.json's "localisation" and the bullseye's title)
METHOD_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "occlude": ("how far P(LGE) falls when the segment's wall (and {band} mm around it) is set to the slice's "
                "healthy-wall level", "fall of P(LGE) when\nthe segment is removed"),
    "keep": ("P(LGE) of the slice with only the segment's wall (and {band} mm around it) left enhanced",
             "P(LGE) with only\nthe segment's wall left"),
    "bright": ("P(LGE) x the share of the segment's myocardium brighter than half-way from the darkest quarter of the "
               "wall to the blood pool (a training-free intensity rule says where, the model whether)",
               "P(LGE) x bright share\nof the segment's wall"),
    "prompts": ("P(LGE) x the softmax over the level's walls of the model's similarity to 'There is late gadolinium "
                "enhancement of the <level> <wall> wall.'", "P(LGE) x q(wall)\nasked in words"),
    "caption": ("P(LGE) x the softmax over the level's walls of the caption decoder's likelihood of 'There is late "
                "gadolinium enhancement of the <level> <wall> wall.'", "P(LGE) x q(wall)\nby the caption decoder"),
}


def level_of_segment(seg: int) -> str:
    for level, segs in LEVEL_SEGMENTS.items():
        if seg in segs:
            return level
    raise ValueError(f"segment {seg} is not one of the 16 short-axis segments")


def healthy_level(image: np.ndarray, myocardium: np.ndarray, q: float = 25.0) -> float:
    """The slice's healthy-wall intensity: the ``q``-th percentile of its myocardium."""
    m = np.asarray(myocardium) > 0
    return float(np.percentile(np.asarray(image)[m], q)) if m.any() else 0.0


@dataclass
class RegionMaps:
    """One slice on the model's grid: image [0, 1], myocardium, AHA segment and wall-third maps, level.

    ``band_px``: each region reaches this many pixels beyond the myocardium mask (every band pixel takes the segment
    and third of its nearest wall pixel: cavity side endocardial, outside epicardial), because segmentation nets
    tend to give bright subendocardial scar to the blood pool, so a region drawn on the mask alone misses it."""

    image: np.ndarray
    myocardium: np.ndarray
    aha: np.ndarray
    layers: np.ndarray
    level: str
    band_px: float = 0.0

    @cached_property
    def wall(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(wall, aha, layers)``: the myocardium widened by ``band_px`` and its two maps extended over it
        (computed once per slice: every region and edited image reads it)."""
        myo = (self.myocardium > 0) & (self.aha > 0)
        if self.band_px <= 0 or not myo.any():
            return myo, np.where(myo, self.aha, 0), np.where(myo, self.layers, 0)
        dist, (ri, ci) = ndimage.distance_transform_edt(~myo, return_indices=True)
        wall = dist <= self.band_px
        return wall, np.where(wall, self.aha[ri, ci], 0), np.where(wall, self.layers[ri, ci], 0)

    def regions(self, min_pixels: int = 4) -> list[tuple[str, int, np.ndarray]]:
        """``(kind, id, mask)`` for each segment of the level and each wall third with at least ``min_pixels``."""
        _, aha, layers = self.wall
        out = []
        for seg in LEVEL_SEGMENTS[self.level]:
            m = aha == seg
            if m.sum() >= min_pixels:
                out.append(("segment", seg, m))
        for d in DEPTHS:
            m = layers == d
            if m.sum() >= min_pixels:
                out.append(("depth", d, m))
        return out


def edited_images(maps: RegionMaps, method: str = DEFAULT_METHOD) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """The slice's region images (R, S, S) for ``method`` and their ``(kind, id)``; none without a segment map."""
    if method not in EDIT_METHODS:
        raise ValueError(f"method must be one of {EDIT_METHODS}, got {method!r}")
    if not (maps.aha > 0).any():
        return np.zeros((0, *maps.image.shape), np.float32), []
    fill = healthy_level(maps.image, maps.myocardium)
    wall = maps.wall[0]
    imgs, ids = [], []
    for kind, rid, mask in maps.regions():
        img = np.array(maps.image, np.float32, copy=True)
        img[(wall & ~mask) if method == "keep" else mask] = fill
        imgs.append(img)
        ids.append((kind, rid))
    return (np.stack(imgs) if imgs else np.zeros((0, *maps.image.shape), np.float32)), ids


def bright_threshold(image: np.ndarray, myocardium: np.ndarray) -> float | None:
    """Half-way from the mean of the darkest quarter of the wall to the blood pool: the median of the cavity the
    wall encloses, or where the mask is not closed (a segmentation gap, an apical slice) of the disc around the
    wall's centroid that reaches its nearest wall pixel; None without a wall or either."""
    myo = np.asarray(myocardium) > 0
    if myo.sum() < 4:
        return None
    cav = ndimage.binary_fill_holes(myo) & ~myo
    if not cav.any():
        c = np.argwhere(myo).mean(0)
        rr, cc = np.mgrid[: myo.shape[0], : myo.shape[1]]
        d = np.hypot(rr - c[0], cc - c[1])
        cav = (d < d[myo].min()) & ~myo
    if not cav.any():
        return None
    wall = np.sort(np.asarray(image, float)[myo])
    dark = float(wall[: max(1, len(wall) // 4)].mean())
    return dark + 0.5 * (float(np.median(np.asarray(image, float)[cav])) - dark)


def bright_share(image: np.ndarray, myocardium: np.ndarray, region: np.ndarray | None = None,
                 threshold: float | None = None) -> float:
    """The share of the wall (within ``region`` when given) above ``threshold`` (default: ``bright_threshold`` of
    the slice); NaN where the slice has no wall or blood pool to compare, 0 for a region with no wall pixel."""
    myo = np.asarray(myocardium) > 0
    t = bright_threshold(image, myocardium) if threshold is None else threshold
    if t is None:
        return float("nan")
    m = myo if region is None else myo & region
    return float((np.asarray(image)[m] > t).mean()) if m.any() else 0.0


def _bright(maps: RegionMaps, p: float) -> dict:
    t = bright_threshold(maps.image, maps.myocardium)
    out: dict = {"segments": {}, "depth": {}, "reason": None}
    if not (maps.aha > 0).any():
        out["reason"] = "no AHA segment map (RVIPs unusable: slice not oriented)"
        return out
    own = RegionMaps(maps.image, maps.myocardium, maps.aha, maps.layers, maps.level)  # no band
    for kind, rid, mask in own.regions():
        # the rule sees nothing without a blood pool: every region scores 0 (and is still counted)
        v = 0.0 if t is None else p * bright_share(maps.image, maps.myocardium, mask, t)
        if kind == "segment":
            out["segments"][rid] = v
        else:
            out["depth"][DEPTHS[rid]] = v
    return out


ScoreFn = Callable[[np.ndarray, list[str]], np.ndarray]  # (B, S, S) images + B levels -> (B,) P(LGE)


def localise(score: ScoreFn, slices: Sequence[RegionMaps], p_slice: Sequence[float] | None = None,
             method: str = DEFAULT_METHOD) -> list[dict]:
    """Regional answers for each slice: ``{"segments": {seg: p}, "depth": {name: p}, "reason": None | str}``.

    ``score`` is the slice rule (``Predictor.score_images``); ``p_slice`` (needed by ``occlude`` and ``bright``) the
    slices' own P(LGE). All edited images go through ``score`` in one call; ``bright`` calls no model."""
    if method in ("occlude", "bright") and p_slice is None:
        raise ValueError(f"method {method!r} needs the slices' own P(LGE) (p_slice)")
    if method == "bright":
        return [_bright(m, float(p)) for m, p in zip(slices, p_slice, strict=True)]  # type: ignore[arg-type]
    batches, owners = [], []
    out = []
    for i, m in enumerate(slices):
        imgs, ids = edited_images(m, method)
        out.append({"segments": {}, "depth": {},
                    "reason": None if ids else "no AHA segment map (RVIPs unusable: slice not oriented)"})
        batches.append(imgs)
        owners += [(i, kind, rid) for kind, rid in ids]
    if owners:
        allimgs = np.concatenate(batches)
        p = np.asarray(score(allimgs, [slices[i].level for i, _, _ in owners]), float)
        for (i, kind, rid), pi in zip(owners, p, strict=True):
            v = float(pi) if method == "keep" else max(0.0, float(p_slice[i]) - float(pi))  # type: ignore[index]
            if kind == "segment":
                out[i]["segments"][rid] = v
            else:
                out[i]["depth"][DEPTHS[rid]] = v
    return out


def study_segments(levels: Sequence[str], regional: Sequence[dict]) -> list[dict]:
    """The 16-segment table of a study: per segment the maximum over its level's slices that answered, with the
    number of those slices (``score`` None where no slice of the level could be read regionally)."""
    rows = []
    for seg in range(1, 17):
        vals = [r["segments"][seg] for lv, r in zip(levels, regional, strict=True)
                if lv == level_of_segment(seg) and seg in r["segments"]]
        rows.append({"segment": seg, "name": SEGMENT_NAMES[seg], "level": level_of_segment(seg),
                     "score": float(max(vals)) if vals else None, "n_slices": len(vals)})
    return rows


# --------------------------------------------------------------------------------------------------- bullseye
_RINGS = {"basal": (0.75, 1.0), "mid": (0.5, 0.75), "apical": (0.25, 0.5)}


def bullseye_wedge(seg: int) -> tuple[float, float, float, float]:
    """``(r_inner, r_outer, theta1, theta2)`` of a segment in the AHA plot (radius 1; degrees counter-clockwise
    from the right-hand horizontal, i.e. matplotlib's ``Wedge``); segment 17 is the central disc."""
    if seg == 17:
        return 0.0, 0.25, 0.0, 360.0
    level = level_of_segment(seg)
    r0, r1 = _RINGS[level]
    if level == "apical":  # anterior on top, then septal (left), inferior (bottom), lateral (right)
        mid, half = 90.0 + 90.0 * (seg - 13), 45.0
    else:  # anterior on top, then anteroseptal, inferoseptal (left), inferior, inferolateral, anterolateral
        mid, half = 90.0 + 60.0 * ((seg - 1) % 6), 30.0
    return r0, r1, mid - half, mid + half


def bullseye_segment_at(x: float, y: float) -> int | None:
    """The segment the AHA plot shows at point (x, y) (centre 0, radius 1, y up); None outside the plot."""
    r = float(np.hypot(x, y))
    if r > 1.0:
        return None
    if r < 0.25:
        return 17
    theta = float(np.degrees(np.arctan2(y, x))) % 360.0
    for seg in range(1, 17):
        r0, r1, t1, t2 = bullseye_wedge(seg)
        if r0 <= r < r1 and (theta - t1) % 360.0 < (t2 - t1):
            return seg
    return None


def plot_bullseye(ax, values: dict[int, float | None], title: str = "", vmax: float = 1.0,
                  cmap: str = "Reds") -> None:
    """Draw the 16-segment bullseye of ``values`` (segment -> P, None = not read) on a matplotlib axis."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Wedge

    cm = plt.get_cmap(cmap)
    for seg in range(1, 18):
        r0, r1, t1, t2 = bullseye_wedge(seg)
        v = values.get(seg)
        face = (0.8, 0.8, 0.8, 1.0) if v is None else cm(min(max(v / vmax, 0.0), 1.0))
        ax.add_patch(Wedge((0, 0), r1, t1, t2, width=r1 - r0, facecolor=face, edgecolor="0.4", linewidth=0.8))
        if seg < 17:
            rm, tm = (r0 + r1) / 2, np.radians((t1 + t2) / 2)
            light = 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] > 0.5
            ax.text(rm * np.cos(tm), rm * np.sin(tm), str(seg), ha="center", va="center", fontsize=6,
                    color="black" if light else "white")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.text(0, 1.08, "anterior", ha="center", va="bottom", fontsize=6)
    ax.text(-1.08, 0, "septal", ha="right", va="center", fontsize=6, rotation=90)
    if title:
        ax.set_title(title, fontsize=8, pad=12)
