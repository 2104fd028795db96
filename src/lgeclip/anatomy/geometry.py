"""Pure short-axis geometry on masks: LV centre, transmural depth, wall thickness, wall layers.

All functions take bool/uint8 (H, W) masks, are vectorised (numpy / scipy.ndimage distance transforms), draw no
random numbers and return arrays on the same grid. Myocardium pixels are measured between the endocardium (the
border with the blood pool) and the epicardium (the border with everything that is neither myocardium nor blood
pool). When ``blood_pool`` is None, the LV cavity is the filled hole of the myocardium ring.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _mask(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask, got shape {a.shape}")
    return a > 0


def cavity(myocardium: np.ndarray, blood_pool: np.ndarray | None = None) -> np.ndarray:
    """LV cavity mask: ``blood_pool`` when given and non-empty, else the filled hole of the myocardium (bool)."""
    myo = _mask(myocardium, "myocardium")
    if blood_pool is not None:
        bp = _mask(blood_pool, "blood_pool") & ~myo
        if bp.any():
            return bp
    return ndi.binary_fill_holes(myo) & ~myo


def lv_center(myocardium: np.ndarray, blood_pool: np.ndarray | None = None) -> tuple[float, float]:
    """LV centre (row, col): centroid of the blood pool, else of the myocardium's filled hole, else of the
    myocardium itself (an open ring). Raises ValueError on an empty myocardium and no blood pool."""
    myo = _mask(myocardium, "myocardium")
    cav = cavity(myo, blood_pool)
    src = cav if cav.any() else myo
    if not src.any():
        raise ValueError("lv_center: empty myocardium and blood pool")
    rr, cc = np.nonzero(src)
    return float(rr.mean()), float(cc.mean())


def _endo_epi_distances(myocardium: np.ndarray, blood_pool: np.ndarray | None,
                        spacing_mm: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(myo mask, d_endo, d_epi): distances (mm) of pixel centres to the nearest cavity / outside pixel centre."""
    myo = _mask(myocardium, "myocardium")
    cav = cavity(myo, blood_pool)
    if not cav.any():
        raise ValueError("no LV cavity: blood pool empty and the myocardium encloses no hole")
    d_endo = ndi.distance_transform_edt(~cav, sampling=spacing_mm)
    d_epi = ndi.distance_transform_edt(myo | cav, sampling=spacing_mm)
    return myo, d_endo, d_epi


def _spacing(spacing_mm: float | tuple[float, float]) -> tuple[float, float]:
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (2,))
    if np.any(sp <= 0):
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    return float(sp[0]), float(sp[1])


def transmural_depth(myocardium: np.ndarray, blood_pool: np.ndarray | None = None) -> np.ndarray:
    """Relative transmural depth, float32 (H, W): 0 at the endocardium .. 1 at the epicardium, 0 outside.

    ``(d_endo - 1/2) / (d_endo + d_epi - 1)`` with pixel distance transforms, so pixel centres of a wall of T pixels
    get ``(i - 1/2) / T``, i = 1..T (the half pixel puts the boundary between pixel centres)."""
    return wall_maps(myocardium, blood_pool, sigma_px=0.0)[0]


def wall_thickness(myocardium: np.ndarray, blood_pool: np.ndarray | None = None,
                   spacing_mm: float | tuple[float, float] = 1.0, sigma_px: float = 1.5) -> np.ndarray:
    """Local wall thickness in mm, float32 (H, W), 0 outside the myocardium.

    Raw thickness at a pixel is ``d_endo + d_epi - pixel`` (mm), i.e. the length of the shortest endo-to-epi
    path through it; it is then smoothed with a Gaussian (``sigma_px``) normalised within the myocardium."""
    return wall_maps(myocardium, blood_pool, spacing_mm, sigma_px)[1]


def wall_layers(myocardium: np.ndarray, blood_pool: np.ndarray | None = None) -> np.ndarray:
    """Wall thirds, uint8 (H, W): 1 endocardial, 2 mid-wall, 3 epicardial (by transmural depth), 0 outside."""
    return wall_maps(myocardium, blood_pool, sigma_px=0.0)[2]


def myocardium_area_mm2(myocardium: np.ndarray, spacing_mm: float | tuple[float, float] = 1.0) -> float:
    """Myocardium area in mm^2."""
    sp = _spacing(spacing_mm)
    return float(_mask(myocardium, "myocardium").sum() * sp[0] * sp[1])


def wall_maps(myocardium: np.ndarray, blood_pool: np.ndarray | None = None,
              spacing_mm: float | tuple[float, float] = 1.0,
              sigma_px: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(transmural_depth, wall_thickness, wall_layers)`` from one pair of distance transforms (the cache path)."""
    sp = _spacing(spacing_mm)
    myo, d_endo, d_epi = _endo_epi_distances(myocardium, blood_pool, sp)
    half = 0.5 * (sp[0] + sp[1]) / 2.0
    a = np.maximum(d_endo - half, 0.0)
    b = np.maximum(d_epi - half, 0.0)
    depth = np.clip(np.where(myo, a / np.maximum(a + b, 1e-6), 0.0), 0.0, 1.0).astype(np.float32)
    raw = np.where(myo, np.maximum(a + b, 0.5 * min(sp)), 0.0)
    if sigma_px > 0:
        num = ndi.gaussian_filter(raw, sigma_px, mode="constant")
        den = ndi.gaussian_filter(myo.astype(float), sigma_px, mode="constant")
        raw = np.where(myo, num / np.maximum(den, 1e-6), 0.0)
    layers = 1 + (depth >= 1.0 / 3.0).astype(np.uint8) + (depth >= 2.0 / 3.0).astype(np.uint8)
    return depth, raw.astype(np.float32), np.where(myo, layers, 0).astype(np.uint8)
