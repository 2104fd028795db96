"""The paper's slice preprocessing chain, invertible: native slice -> cache grid (image in [0, 1] + anatomy maps).

Stages, each an affine map of (row, col) pixel coordinates (pixel-area convention: a pixel spans +-1/2):

1. resample to ``pixel_mm`` pixels: ``r = (p + 1/2) * zoom - 1/2`` with ``zoom = spacing_mm / pixel_mm``;
2. crop ``crop`` x ``crop`` centred on the LV centre: ``k = r - (r0, c0)`` (integer box, may leave the image:
   those pixels are padding);
3. orientation normalisation (``lgeclip.anatomy.orient.OrientTransform`` on the crop grid): rotation about the
   LV centre so the anterior RVIP is directly above the inferior RVIP;
4. upsampling by ``upsample``: ``f = u * k + (u - 1) / 2``.

The stages are composed into one affine map and the native image is sampled once (bilinear; masks bilinear then
> 1/2, which keeps myocardium / blood pool disjoint and scar inside the myocardium). The image is capped at the
``percentile`` of the crop (pixels inside the native image) and scaled to [0, 1] (padding = 0). Anatomy maps
(AHA segments, wall layers, wall thickness in mm) are computed on the final grid. The NATIVE variant is the same
chain without stage 3 (for the orientation ablation). ``props`` (JSON-able) records what ``invert_points`` /
``invert_image`` need to map cache-grid results back to the native grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from lgeclip.anatomy.aha import LEVELS, aha_segment_map, septal_direction
from lgeclip.anatomy.geometry import cavity, myocardium_area_mm2, wall_maps
from lgeclip.anatomy.orient import OrientTransform, orient_transform
from lgeclip.anatomy.types import AnatomyResult
from lgeclip.preprocess.config import PreprocessCfg

TRUTH_MASKS = ("scar", "mvo")  # truth masks carried through the chain when given
MAP_KEYS = ("image", "myocardium", "blood_pool", "aha", "layers", "thickness", "rvip", "lv_center")


class ImplausibleSlice(ValueError):
    """The anatomy of a slice is implausible (the slice is excluded); ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class SliceMaps:
    """One variant on the final grid (S, S): image float32 [0, 1], masks uint8, thickness mm, points (row, col)."""

    image: np.ndarray
    myocardium: np.ndarray
    blood_pool: np.ndarray
    aha: np.ndarray
    layers: np.ndarray
    thickness: np.ndarray
    rvip: np.ndarray  # (2, 2) float32 [[ant_r, ant_c], [inf_r, inf_c]]
    lv_center: np.ndarray  # (2,) float32
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. scar, mvo (uint8)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {prefix + k: getattr(self, k) for k in MAP_KEYS}
        out.update({prefix + k: v for k, v in self.truth.items()})
        return out


@dataclass
class PreprocessedSlice:
    """Both variants of a preprocessed slice plus the ``props`` that invert the chain.

    ``oriented`` is the main variant (unrotated when ``cfg.orient`` is False), ``native`` never rotated."""

    oriented: SliceMaps
    native: SliceMaps
    props: dict
    level: str
    pixel_mm: float  # pixel size of the final grid

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for the cache npz: main keys, ``native_`` keys, ``props`` (uint8 JSON), ``pixel_mm``, ``level``."""
        import json

        out = self.oriented.arrays()
        out.update(self.native.arrays("native_"))
        out["props"] = np.frombuffer(json.dumps(self.props).encode("utf-8"), dtype=np.uint8).copy()
        out["pixel_mm"] = np.float32(self.pixel_mm)
        out["level"] = np.array(self.level)
        return out

    def invert_points(self, pts: np.ndarray, oriented: bool = True) -> np.ndarray:
        return invert_points(self.props, pts, oriented)

    def invert_image(self, img: np.ndarray, oriented: bool = True, order: int = 1) -> np.ndarray:
        return invert_image(self.props, img, oriented, order)


# ----------------------------------------------------------------------------------------------------- the chain
def chain_matrix(props: dict, oriented: bool = True) -> np.ndarray:
    """3x3 homogeneous matrix mapping native (row, col, 1) to the final grid, rebuilt from ``props``."""
    z = np.asarray(props["zoom"], float)
    Z = np.array([[z[0], 0, 0.5 * z[0] - 0.5], [0, z[1], 0.5 * z[1] - 0.5], [0, 0, 1.0]])
    r0, c0 = props["crop_box"][:2]
    C = np.array([[1.0, 0, -r0], [0, 1.0, -c0], [0, 0, 1.0]])
    Q = np.eye(3)
    if oriented and props.get("orient") is not None:
        t = OrientTransform.from_dict(props["orient"])
        R, c = t.matrix, np.asarray(t.centre, float)
        Q[:2, :2], Q[:2, 2] = R, c - R @ c
    u = float(props["upsample"])
    U = np.array([[u, 0, (u - 1) / 2], [0, u, (u - 1) / 2], [0, 0, 1.0]])
    return U @ Q @ C @ Z


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, float).reshape(-1, 2)
    return p @ m[:2, :2].T + m[:2, 2]


def forward_points(props: dict, pts: np.ndarray, oriented: bool = True) -> np.ndarray:
    """Map (N, 2) native (row, col) points to the final grid."""
    return _apply(chain_matrix(props, oriented), pts)


def invert_points(props: dict, pts: np.ndarray, oriented: bool = True) -> np.ndarray:
    """Map (N, 2) final-grid (row, col) points back to native pixels."""
    return _apply(np.linalg.inv(chain_matrix(props, oriented)), pts)


def invert_image(props: dict, img: np.ndarray, oriented: bool = True, order: int = 1) -> np.ndarray:
    """Resample a final-grid map (S, S) onto the native grid (order 1 for continuous maps, 0 for labels)."""
    m = chain_matrix(props, oriented)
    img = np.asarray(img)
    src = img.astype(np.float32) if order > 0 else img
    out = ndi.affine_transform(src, m[:2, :2], offset=m[:2, 2], output_shape=tuple(props["native_shape"]),
                               order=order, mode="constant", cval=0.0)
    return out if order > 0 else out.astype(img.dtype)


def _sample(img: np.ndarray, inv: np.ndarray, size: int, mode: str) -> np.ndarray:
    return ndi.affine_transform(img, inv[:2, :2], offset=inv[:2, 2], output_shape=(size, size), order=1,
                                mode=mode, cval=0.0)


# ---------------------------------------------------------------------------------------------- plausibility
def _check_native(anatomy: AnatomyResult, sp: np.ndarray, cfg: PreprocessCfg) -> str | None:
    """Raise ImplausibleSlice for an unusable LV; return the RVIP problem tolerated by ``cfg.rvip_fallback``."""
    myo = anatomy.myocardium > 0
    if not myo.any():
        raise ImplausibleSlice("no LV found (empty myocardium)")
    c = np.asarray(anatomy.lv_center, float)
    if not np.all(np.isfinite(c)):
        raise ImplausibleSlice("no LV found (no LV centre)")
    if not cavity(myo, anatomy.blood_pool).any():
        raise ImplausibleSlice("no LV cavity (empty blood pool and open myocardium)")
    area = myocardium_area_mm2(myo, tuple(sp))
    if not cfg.min_myo_area_mm2 <= area <= cfg.max_myo_area_mm2:
        raise ImplausibleSlice(f"myocardium area {area:.0f} mm2 outside [{cfg.min_myo_area_mm2:g}, "
                               f"{cfg.max_myo_area_mm2:g}]")
    problem = _rvip_problem(anatomy, sp, cfg)
    if problem is not None and not cfg.rvip_fallback:
        raise ImplausibleSlice(problem)
    return problem


def plausibility_problem(anatomy: AnatomyResult, spacing_mm, cfg: PreprocessCfg | None = None) -> str | None:
    """Why the anatomy of a slice fails the preprocessing checks (LV, then RVIPs, as without ``rvip_fallback``);
    None when the slice can be oriented and mapped to AHA segments."""
    cfg = cfg or PreprocessCfg()
    sp = np.asarray(spacing_mm, float).reshape(-1)
    sp = np.array([sp[0], sp[-1]])
    try:
        return _check_native(anatomy, sp, cfg)
    except ImplausibleSlice as e:
        return e.reason


def stack_consistent(anatomies: list[AnatomyResult | None], spacings: list, stacks: list, positions: list,
                     cfg: PreprocessCfg) -> tuple[list[AnatomyResult | None], int]:
    """``anatomy.stack.stack_consistent_rvips`` with this recipe's plausibility checks and limit
    (``cfg.rvip_stack_max_dev_deg``; 0 leaves the anatomies as they are); returns (anatomies, slices changed)."""
    if cfg.rvip_stack_max_dev_deg <= 0:
        return list(anatomies), 0
    from lgeclip.anatomy.stack import stack_consistent_rvips

    ok = [a is not None and plausibility_problem(a, sp, cfg) is None for a, sp in zip(anatomies, spacings,
                                                                                       strict=True)]
    new, notes = stack_consistent_rvips(anatomies, spacings, stacks, positions, ok,
                                        max_dev_deg=cfg.rvip_stack_max_dev_deg)
    return new, sum(bool(n) for n in notes)


def _rvip_problem(anatomy: AnatomyResult, sp: np.ndarray, cfg: PreprocessCfg) -> str | None:
    """Why the RVIPs cannot orient this slice or place its AHA segments (None when they are plausible)."""
    if not anatomy.has_rvip:
        return "RVIPs missing"
    myo = anatomy.myocardium > 0
    c = np.asarray(anatomy.lv_center, float)
    pts = anatomy.rvip.astype(float)
    d = float(np.hypot(*((pts[0] - pts[1]) * sp)))
    if d < cfg.min_rvip_distance_mm:
        return f"RVIPs too close ({d:.1f} mm < {cfg.min_rvip_distance_mm:g} mm)"
    yx = np.argwhere(myo).astype(float)
    cav = cavity(myo, anatomy.blood_pool)
    for name, p in zip(("anterior", "inferior"), pts, strict=True):
        dm = float(np.sqrt((((yx - p) * sp) ** 2).sum(1)).min())
        if dm > cfg.max_rvip_myo_distance_mm:
            return f"{name} RVIP {dm:.1f} mm from the myocardium (> {cfg.max_rvip_myo_distance_mm:g})"
        ir, ic = int(round(p[0])), int(round(p[1]))
        if 0 <= ir < myo.shape[0] and 0 <= ic < myo.shape[1] and cav[ir, ic]:
            return f"{name} RVIP inside the LV cavity (wrong side of the wall)"
    try:
        _, _, arc = septal_direction(tuple(c), tuple(pts[0]), tuple(pts[1]))
    except ValueError as e:
        return f"RVIPs unusable: {e}"
    deg = float(np.rad2deg(arc))
    if not cfg.min_rvip_angle_deg <= deg <= cfg.max_rvip_angle_deg:
        return (f"RVIPs subtend {deg:.0f} deg at the LV centre (outside "
                f"[{cfg.min_rvip_angle_deg:g}, {cfg.max_rvip_angle_deg:g}])")
    return None


# ------------------------------------------------------------------------------------------------- variants
def _variant(image: np.ndarray, anatomy: AnatomyResult, truth: dict, props: dict, oriented: bool,
             cfg: PreprocessCfg, level: str) -> tuple[SliceMaps, dict]:
    m = chain_matrix(props, oriented)
    inv = np.linalg.inv(m)
    n = cfg.size
    # which output pixels lie inside the native image
    g = np.indices((n, n), dtype=float).reshape(2, -1).T
    src = _apply(inv, g)
    h, w = image.shape
    inside = ((src[:, 0] >= -0.5) & (src[:, 0] <= h - 0.5) & (src[:, 1] >= -0.5) & (src[:, 1] <= w - 0.5))
    inside = inside.reshape(n, n)
    frac = float(inside.mean())
    if frac < cfg.min_inside_fraction:
        raise ImplausibleSlice(f"crop mostly outside the image ({100 * frac:.0f}% inside)")
    img = _sample(image.astype(np.float32), inv, n, "nearest")
    vals = img[inside]
    lo, hi = float(vals.min()), float(np.percentile(vals, cfg.percentile))
    if not hi > lo:
        raise ImplausibleSlice(f"constant image in the crop (min {lo:g}, p{cfg.percentile:g} {hi:g})")
    img = np.where(inside, np.clip((img - lo) / (hi - lo), 0.0, 1.0), 0.0).astype(np.float32)

    def mask(a: np.ndarray) -> np.ndarray:
        return (_sample((np.asarray(a) > 0).astype(np.float32), inv, n, "constant") > 0.5).astype(np.uint8)

    myo, bp = mask(anatomy.myocardium), mask(anatomy.blood_pool)
    pts = _apply(m, np.array([anatomy.anterior_rvip, anatomy.inferior_rvip, anatomy.lv_center]))
    if not myo.any():
        raise ImplausibleSlice("myocardium lost after resampling")
    try:
        aha = (np.zeros_like(myo) if props.get("rvip_problem")  # no segments without usable RVIPs (fallback)
               else aha_segment_map(myo, tuple(pts[0]), tuple(pts[1]), level, center=tuple(pts[2])))
        _, thickness, layers = wall_maps(myo, bp, cfg.out_pixel_mm, cfg.thickness_sigma_mm / cfg.out_pixel_mm)
    except ValueError as e:
        raise ImplausibleSlice(f"anatomy maps failed on the cache grid: {e}") from e
    maps = SliceMaps(image=img, myocardium=myo, blood_pool=bp, aha=aha, layers=layers, thickness=thickness,
                     rvip=pts[:2].astype(np.float32), lv_center=pts[2].astype(np.float32),
                     truth={k: mask(v) for k, v in truth.items()})
    return maps, {"intensity": [lo, hi], "inside_fraction": frac}


def preprocess_slice(image: np.ndarray, spacing_mm: tuple[float, float] | np.ndarray, anatomy: AnatomyResult,
                     cfg: PreprocessCfg | None = None, truth: dict | None = None,
                     level: str = "mid") -> PreprocessedSlice:
    """Run the chain on one native slice (H, W) with its anatomy (native grid); both variants + props.

    ``level`` (basal / mid / apical) selects the AHA segments; ``truth`` masks (``scar``, ``mvo``; native grid)
    are carried along. Raises ``ImplausibleSlice(reason)`` when the anatomy is implausible."""
    cfg = cfg or PreprocessCfg()
    if level not in LEVELS:
        raise ValueError(f"level {level!r} not in {LEVELS}")
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image: expected (H, W), got shape {image.shape}")
    if anatomy.shape != image.shape:
        raise ValueError(f"anatomy grid {anatomy.shape} != image grid {image.shape}")
    sp = np.broadcast_to(np.asarray(spacing_mm, float), (2,)).copy()
    if not np.all(sp > 0):
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    rvip_problem = _check_native(anatomy, sp, cfg)
    truth = {k: np.asarray(v) for k, v in (truth or {}).items() if k in TRUTH_MASKS and v is not None}
    for k, v in truth.items():
        if v.shape != image.shape:
            raise ValueError(f"truth {k} grid {v.shape} != image grid {image.shape}")

    zoom = sp / cfg.pixel_mm
    c_r = (np.asarray(anatomy.lv_center, float) + 0.5) * zoom - 0.5
    r0, c0 = (int(x) for x in np.round(c_r - (cfg.crop - 1) / 2.0))
    props: dict = {
        "native_shape": [int(s) for s in image.shape], "spacing_mm": sp.tolist(), "pixel_mm": cfg.pixel_mm,
        "zoom": zoom.tolist(), "crop": cfg.crop, "crop_box": [r0, c0, r0 + cfg.crop, c0 + cfg.crop],
        "upsample": cfg.upsample, "out_pixel_mm": cfg.out_pixel_mm, "percentile": cfg.percentile, "level": level,
        "lv_center_native": [float(x) for x in anatomy.lv_center], "rvip_native": anatomy.rvip.tolist(),
        "orient": None, "rvip_problem": rvip_problem,
    }
    if cfg.orient and props["rvip_problem"] is None:
        # rotation on the crop grid about the LV centre, from the RVIPs mapped into the crop grid
        k = _apply(chain_matrix(props, oriented=False), np.array([anatomy.anterior_rvip, anatomy.inferior_rvip,
                                                                  anatomy.lv_center]))
        u = cfg.upsample
        k = (k - (u - 1) / 2) / u  # undo the upsampling: crop-grid coordinates
        try:
            t = orient_transform((cfg.crop, cfg.crop), tuple(k[2]), tuple(k[0]), tuple(k[1]))
        except ValueError as e:
            raise ImplausibleSlice(f"orientation failed: {e}") from e
        props["orient"] = t.to_dict()
    oriented, info_o = _variant(image, anatomy, truth, props, True, cfg, level)
    native, info_n = _variant(image, anatomy, truth, props, False, cfg, level)
    props["intensity"] = {"oriented": info_o["intensity"], "native": info_n["intensity"]}
    props["inside_fraction"] = {"oriented": info_o["inside_fraction"], "native": info_n["inside_fraction"]}
    med = float(np.median(oriented.thickness[oriented.myocardium > 0]))
    if not cfg.min_wall_mm <= med <= cfg.max_wall_mm:
        raise ImplausibleSlice(f"median wall thickness {med:.1f} mm outside [{cfg.min_wall_mm:g}, {cfg.max_wall_mm:g}]")
    props["median_wall_mm"] = med
    return PreprocessedSlice(oriented=oriented, native=native, props=props, level=level, pixel_mm=cfg.out_pixel_mm)
