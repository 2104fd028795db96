"""Synthetic scar: controller -> AHA segment x layer region -> smoothed random ellipse -> blend -> sentence.

The scar weight M is a smoothed random ellipse placed inside the allowed AHA-segment x layer region:

1. draw (location, extent); candidate region = AHA segments of the location at this level (``aha_segments``)
   x the extent's wall layers x myocardium; redraw when empty (``cfg.max_redraws``), then skip with a reason;
2. centre = a random pixel of the region; th = local wall thickness there (pixels); radii ~ U(r_min, r_max, 2)
   with r_min = max(r_floor, th * rho_min), r_max = th * rho_max; orientation ~ U(0, pi);
3. E = binary ellipse, G = Gaussian(E, sigma = U(0, 1) * s1 + s2);
4. clipping: G is multiplied by the candidate-region mask (which lies inside the myocardium) *after* smoothing,
   then min-max normalised (min is 0 because the mask zeroes everything outside; max > 0 because the centre is
   in the region), so M in [0, 1], M = 1 at its peak and M == 0 exactly outside the region and the myocardium;
5. I_synth = I * (1 - M) + gamma * max(I) * M, gamma ~ U(b1, b2).

For speed the ellipse and the Gaussian are computed only on a crop around the ellipse with a margin of
``truncate * sigma`` (the Gaussian's support), which equals a full-image filter with zero padding.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lgeclip.synth.config import EXTENT_LAYERS, SynthScarCfg
from lgeclip.synth.templates import draw_sentence


def _lut(values: list[int] | tuple[int, ...]) -> np.ndarray:
    lut = np.zeros(256, dtype=bool)
    lut[list(values)] = True
    return lut


def _as_u8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == np.uint8 else a.astype(np.uint8)


def scar_region(myocardium: np.ndarray, aha_map: np.ndarray, layer_map: np.ndarray,
                segments: list[int] | tuple[int, ...], layers: list[int] | tuple[int, ...]) -> np.ndarray:
    """Candidate region, bool (H, W): AHA ``segments`` x wall ``layers`` x myocardium (pure, no randomness)."""
    return _lut(segments)[_as_u8(aha_map)] & _lut(layers)[_as_u8(layer_map)] & (np.asarray(myocardium) > 0)


def _skip(reason: str, level: str, redraws: list[dict]) -> dict:
    return {"applied": False, "skipped": reason, "level": level, "redraws": redraws}


def _thickness_px(thickness_map: np.ndarray, myocardium: np.ndarray, r: int, c: int,
                  pixel_mm: float) -> tuple[float, float, str]:
    """(thickness mm, thickness px, source) at (r, c); falls back to the median wall thickness, then 1 px."""
    th = float(thickness_map[r, c])
    if math.isfinite(th) and th > 0:
        return th, th / pixel_mm, "centre"
    vals = np.asarray(thickness_map)[np.asarray(myocardium) > 0]
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        th = float(np.median(vals))
        return th, th / pixel_mm, "median"
    return pixel_mm, 1.0, "default"


def draw_scar_params(myocardium: np.ndarray, aha_map: np.ndarray, layer_map: np.ndarray,
                     thickness_map: np.ndarray, level: str, rng: np.random.Generator, cfg: SynthScarCfg,
                     pixel_mm: float = 1.0) -> tuple[dict, np.ndarray | None]:
    """Draw every random choice of one synthetic scar: ``(params, region)``.

    ``params`` is JSON-able; when the region stays empty after ``cfg.max_redraws`` redraws (or there is no
    myocardium) it is ``{"applied": False, "skipped": <reason>, ...}`` and ``region`` is None."""
    from lgeclip.anatomy.aha import aha_segments

    redraws: list[dict] = []
    if not (pixel_mm > 0 and math.isfinite(pixel_mm)):
        raise ValueError(f"pixel_mm must be a positive number, got {pixel_mm}")
    if not np.any(np.asarray(myocardium) > 0):
        return _skip("no myocardium in this slice", level, redraws), None
    locations = cfg.locations
    region = None
    for _ in range(cfg.max_redraws + 1):
        location = locations[int(rng.integers(len(locations)))]
        extent = cfg.extents[int(rng.integers(len(cfg.extents)))]
        layers = EXTENT_LAYERS[extent]
        try:
            segments = aha_segments(location, level)
        except ValueError as e:
            redraws.append({"location": location, "extent": extent, "reason": f"aha_segments failed: {e}"})
            continue
        region = scar_region(myocardium, aha_map, layer_map, segments, layers)
        idx = np.flatnonzero(region)
        if idx.size:
            break
        redraws.append({"location": location, "extent": extent,
                        "reason": f"empty region: segments {segments} x layers {list(layers)} at {level} level"})
        region = None
    if region is None:
        last = redraws[-1]["reason"] if redraws else "no draw"
        return _skip(f"no non-empty candidate region after {len(redraws)} draws (last: {last})", level,
                     redraws), None

    r, c = (int(v) for v in np.unravel_index(idx[int(rng.integers(idx.size))], region.shape))
    th_mm, th_px, th_src = _thickness_px(thickness_map, myocardium, r, c, pixel_mm)
    rho_min, rho_max = cfg.rho(extent)
    r_min = max(cfg.r_floor, th_px * rho_min)
    r_max = max(th_px * rho_max, r_min)
    radii = rng.uniform(r_min, r_max, 2)
    angle = float(rng.uniform(0.0, math.pi))
    sigma = float(rng.random() * cfg.s1 + cfg.s2)
    gamma = float(rng.uniform(cfg.b1, cfg.b2))
    sentence, words = draw_sentence(rng, location, extent, level, cfg.generic_prob)
    params = {
        "applied": True, "skipped": None, "location": location, "extent": extent, "layers": list(layers),
        "segments": [int(s) for s in segments], "level": level, "centre": [r, c], "pixel_mm": float(pixel_mm),
        "thickness_mm": th_mm, "thickness_px": th_px, "thickness_source": th_src, "rho": [rho_min, rho_max],
        "r_min": r_min, "r_max": r_max, "radii": [float(radii[0]), float(radii[1])], "angle": angle,
        "sigma": sigma, "gamma": gamma, **words, "sentence": sentence, "redraws": redraws,
    }
    return params, region


def render_scar_weight(region: np.ndarray, params: dict, cfg: SynthScarCfg) -> np.ndarray:
    """Scar weight M, float32 (H, W) in [0, 1]: the smoothed ellipse of ``params`` clipped to ``region``."""
    h, w = region.shape
    r0, c0 = params["centre"]
    a, b = params["radii"]
    sigma = params["sigma"]
    m = int(math.ceil(max(a, b) + cfg.truncate * sigma)) + 1
    top, bot, left, right = max(r0 - m, 0), min(r0 + m + 1, h), max(c0 - m, 0), min(c0 + m + 1, w)
    dy = np.arange(top - r0, bot - r0, dtype=np.float32)[:, None]
    dx = np.arange(left - c0, right - c0, dtype=np.float32)[None, :]
    ca, sa = math.cos(params["angle"]), math.sin(params["angle"])
    u = (dx * ca + dy * sa) / a
    v = (dy * ca - dx * sa) / b
    ellipse = (u * u + v * v <= 1.0).astype(np.float32)
    g = ndimage.gaussian_filter(ellipse, sigma, mode="constant", truncate=cfg.truncate)
    g *= region[top:bot, left:right]  # clip to the candidate region (inside the myocardium) after smoothing
    lo, hi = 0.0, float(g.max())  # min-max normalise; the min over the image is 0 (zero outside the region)
    out = np.zeros((h, w), dtype=np.float32)
    if hi > lo:
        out[top:bot, left:right] = (g - lo) / (hi - lo)
    return out


def _float_dtype(a: np.ndarray) -> type:
    return np.float64 if a.dtype == np.float64 else np.float32


def blend(image: np.ndarray, weight: np.ndarray, gamma: float) -> np.ndarray:
    """``I * (1 - M) + gamma * max(I) * M`` as a new float array (float32 unless the image is float64)."""
    img = np.asarray(image)
    dtype = _float_dtype(img)
    out = img.astype(dtype, copy=True)
    rows = np.flatnonzero(weight.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(weight[rows[0]:rows[-1] + 1].any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # only the scar's bounding box changes
    wm = weight[box].astype(dtype, copy=False)
    out[box] = out[box] * (1 - wm) + dtype(gamma * float(img.max())) * wm
    return out


def synthesize_scar(image: np.ndarray, myocardium: np.ndarray, aha_map: np.ndarray, layer_map: np.ndarray,
                    thickness_map: np.ndarray, level: str, rng: np.random.Generator, cfg: SynthScarCfg | None = None,
                    pixel_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray, str | None, dict]:
    """Add one synthetic scar to a slice: ``(scarred_image, scar_weight, sentence, params)``.

    Inputs are (H, W) maps on one grid: ``aha_map`` AHA numbers (0 outside), ``layer_map`` 1 endo / 2 mid / 3 epi,
    ``thickness_map`` wall thickness in mm, ``pixel_mm`` the pixel size. ``scar_weight`` is the smoothed mask M in
    [0, 1] (0 outside the candidate region). ``params`` records every draw (JSON-able). When no candidate region
    exists, returns the image unchanged (as float), zeros, None and ``params["skipped"]`` with the reason."""
    cfg = cfg or SynthScarCfg()
    image = np.asarray(image)
    if image.ndim != 2 or np.shape(myocardium) != image.shape:
        raise ValueError(f"synthesize_scar: image {image.shape} and myocardium {np.shape(myocardium)} must be one "
                         "(H, W) grid")
    params, region = draw_scar_params(myocardium, aha_map, layer_map, thickness_map, level, rng, cfg, pixel_mm)
    if region is None:
        return image.astype(_float_dtype(image), copy=True), np.zeros(image.shape, np.float32), None, params
    weight = render_scar_weight(region, params, cfg)
    return blend(image, weight, params["gamma"]), weight, params["sentence"], params
