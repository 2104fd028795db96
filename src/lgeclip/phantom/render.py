"""Vectorised rendering of phantom short-axis slices (plus crude long-axis / localizer views) and their truth.

A slice is drawn in the heart frame of ``lgeclip.phantom.spec`` (polar radius functions with a few Fourier
harmonics for the LV, an RV crescent attached at the two RV insertion points, body wall, lungs, liver,
stomach, aorta, spine), painted tissue by tissue, then partial-volume blurred, textured, multiplied by a coil
bias field, with noise and the occasional ghost / streak. Values are in units of the blood signal (PSIR is
signed: nulled myocardium ~ 0, fluid < 0). Truth masks are evaluated at pixel centres before blurring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lgeclip.phantom.scar import scar_weight
from lgeclip.phantom.spec import SLICE_MM, PatientSpec

SSFP = {"air": 0.0, "lung": 0.05, "myo": 0.24, "blood": 1.0, "fat": 0.85, "muscle": 0.22, "liver": 0.3,
        "fluid": 0.9, "bone": 0.35, "marrow": 0.6, "mediastinum": 0.45, "spleen": 0.4}


@dataclass
class Grid:
    """A pixel grid in the SAX plane: size, square spacing (mm) and the LV centre pixel at the base slice."""

    rows: int
    cols: int
    spacing: float
    lv_px: tuple[float, float]


def psir_grid(spec: PatientSpec) -> Grid:
    g = spec.geometry
    return Grid(g.rows, g.cols, g.spacing, (g.lv_px[0], g.lv_px[1]))


def image_axes(theta_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Anterior and septal unit directions in the image as (d_row, d_col) for in-plane rotation ``theta``."""
    t = np.deg2rad(theta_deg)
    return np.array([-np.cos(t), -np.sin(t)]), np.array([np.sin(t), -np.cos(t)])


def plane_vectors(spec: PatientSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_dir, col_dir, normal) of the SAX plane in LPS; row_dir = direction of increasing column index."""
    g = spec.geometry
    ant_img, sep_img = image_axes(g.theta_deg)
    a3, s3 = np.asarray(g.ant), np.asarray(g.sep)
    col_dir = ant_img[0] * a3 + sep_img[0] * s3
    row_dir = ant_img[1] * a3 + sep_img[1] * s3
    return row_dir, col_dir, np.cross(row_dir, col_dir)


def slice_ipp(spec: PatientSpec, grid: Grid, z: float) -> np.ndarray:
    """ImagePositionPatient (centre of the first pixel) of the SAX slice at ``z`` mm from base on ``grid``."""
    g = spec.geometry
    row_dir, col_dir, _ = plane_vectors(spec)
    c = np.asarray(g.base_center) + z * np.asarray(g.u)
    return c - grid.lv_px[0] * grid.spacing * col_dir - grid.lv_px[1] * grid.spacing * row_dir


def _slice_pose(spec: PatientSpec, grid: Grid, z: float) -> tuple[np.ndarray, float]:
    k = (z - spec.geometry.z0) / SLICE_MM
    center = np.asarray(grid.lv_px) + k * np.asarray(spec.heart.drift_mm) / grid.spacing
    theta = spec.geometry.theta_deg + spec.heart.twist_deg_per_mm * (z - spec.geometry.z0)
    return center, theta + 1.5 * np.sin(3.1 * k + spec.index)


def _polar(harm, a_rad):
    out = 1.0
    for k, amp, ph in harm:
        out = out + amp * np.cos(k * a_rad + ph)
    return out


def heart_radii(spec: PatientSpec, alpha_deg, z: float, systole: float = 0.0):
    """Endocardial and epicardial radius (mm) at heart-frame angles for the slice at ``z``."""
    h = spec.heart
    a = np.deg2rad(alpha_deg)
    f = np.clip(1 - (z / h.length) ** 2, 0.03, 1.0)
    endo = h.r_base * np.sqrt(f) * _polar(h.endo_harm, a) * (1 - (1 - h.scale_systole) * systole)
    t = h.thickness * (1 - 0.25 * (z / h.length) ** 2) * np.clip(_polar(h.thick_harm, a), 0.65, 1.4)
    t = np.clip(t * (1 + 0.35 * systole), 4.5, 14.0)
    return endo, endo + t


def _rv_depth(spec: PatientSpec, alpha_deg, z: float):
    h = spec.heart
    t = ((np.asarray(alpha_deg) - h.alpha_ant) % 360.0) / h.rvip_span
    inside = (t > 0) & (t < 1)
    d = h.rv_depth * (1 - 0.55 * z / h.length) * np.sin(np.pi * np.clip(t, 0, 1)) ** 0.55 * (1 + h.rv_skew * (t - 0.5))
    return np.where(inside, d, 0.0), t


def _blob(pa, ps, c, r, harm_phase: float = 0.0, ecc: float = 0.15):
    """Rotated ellipse-like blob (centre ``c``, mean radius ``r`` mm) without per-pixel trigonometry."""
    da, ds = pa - c[0], ps - c[1]
    q = da * da + ds * ds - ecc * ((da * da - ds * ds) * np.cos(harm_phase) + 2 * da * ds * np.sin(harm_phase))
    return q < r * r


def _smooth_field(rng: np.random.Generator, shape, scale: int = 6) -> np.ndarray:
    small = rng.standard_normal((shape[0] // scale + 2, shape[1] // scale + 2)).astype(np.float32)
    small = ndimage.gaussian_filter(small, 1.0)
    big = ndimage.zoom(small, scale, order=1)[: shape[0], : shape[1]]
    return big / (big.std() + 1e-6)


def render_sax(spec: PatientSpec, z: float, grid: Grid, rng: np.random.Generator, contrast: str = "psir",
               systole: float = 0.0, with_truth: bool = False) -> tuple[np.ndarray, dict]:
    """Render the SAX slice at ``z`` mm from base. Returns (image (rows, cols) float32, truth dict).

    ``contrast``: "psir" (signed), "magnitude" (IR magnitude) or "ssfp" (cine). Truth (when asked): uint8
    masks ``myocardium``, ``blood_pool``, ``rv``, ``scar``, ``mvo``; ``rvip_px`` (2, 2) anterior then inferior;
    ``lv_center_px``; ``alpha_deg`` (heart-frame angle per pixel) for AHA sectors."""
    h, body = spec.heart, spec.body
    t = SSFP if contrast == "ssfp" else body.tissue
    center, theta = _slice_pose(spec, grid, z)
    ant, sep = image_axes(theta)
    yy, xx = np.mgrid[0: grid.rows, 0: grid.cols].astype(np.float32)
    yy = (yy - center[0]) * grid.spacing
    xx = (xx - center[1]) * grid.spacing
    pa, ps = yy * ant[0] + xx * ant[1], yy * sep[0] + xx * sep[1]
    rho_full = np.hypot(pa, ps)
    img = np.full(yy.shape, t["air"], np.float32)
    # body, chest wall and organs (positions in heart-frame mm, some scale along z)
    bc = np.asarray(body.center)
    ba, bsd = pa - bc[0], ps - bc[1]
    beta = np.arctan2(bsd / body.axes[1], ba / body.axes[0])
    rb = np.hypot(ba / body.axes[0], bsd / body.axes[1])
    rb = rb / _polar(body.harm, beta)
    inside = rb < 1.0
    depth_mm = (1.0 - rb) * 0.5 * (body.axes[0] + body.axes[1]) * (0.75 + 0.25 * np.abs(np.cos(beta)))
    fw = np.clip((_smooth_field(rng, yy.shape, 10) - 0.4) / 0.6, 0, 1)
    img[inside] = (t["muscle"] * (1 - fw) + t["fat"] * fw)[inside]
    img[inside & (rho_full < 75) & (pa > -45)] = t["mediastinum"]
    zf = z / h.length
    inner = depth_mm > body.fat_mm + body.muscle_mm + 3
    for lung, s in ((body.lung_l, 1.0 - 0.25 * zf), (body.lung_r, 1.0 - 0.35 * zf)):
        img[_blob(pa, ps, lung[:2], lung[2] * s, 0.7) & inner] = t["lung"]
    liver = _blob(pa, ps, body.liver[:2], body.liver[2] * (0.55 + 0.75 * zf), 1.3, 0.25) & inner
    img[liver] = t["liver"]
    if zf > 0.35:
        img[_blob(pa, ps, body.stomach[:2], body.stomach[2] * (zf - 0.2) * 1.4, 2.0) & inner] = t["fluid"]
    img[_blob(pa, ps, body.aorta[:2], body.aorta[2], 0, 0.05)] = t["blood"]
    img[_blob(pa, ps, body.spine[:2], body.spine[2], 0, 0.1)] = t["bone"]
    img[_blob(pa, ps, body.spine[:2], body.spine[2] * 0.8, 0, 0.1)] = t["marrow"]
    img[inside & (depth_mm < body.fat_mm + body.muscle_mm)] = t["muscle"]
    img[inside & (depth_mm < body.fat_mm)] = t["fat"]
    if body.sternal_wires:
        front = bc + np.array([body.axes[0] * 0.98 - body.fat_mm - body.muscle_mm * 0.5, 0.0])
        d = np.hypot(pa - front[0], ps - (bc[1] - 20))
        img[d < 9] = t["blood"] * 1.4
        img[d < 7] = t["air"]
    # organs get extra partial-volume blur and a fine texture (the heart is drawn on top, sharper)
    img = ndimage.gaussian_filter(img, 1.0) * (1 + 0.06 * _smooth_field(rng, yy.shape, 2) * inside)
    # heart (evaluated in a window around the LV): epicardial fat, RV, LV, papillary muscles, scar
    rad = (h.r_base * 1.3 + h.thickness * 1.4 + h.rv_depth + 3.5 + 2.2 * h.fat * 1.4 + 8) / grid.spacing
    r0, r1 = int(np.clip(center[0] - rad, 0, grid.rows)), int(np.clip(center[0] + rad + 1, 0, grid.rows))
    c0, c1 = int(np.clip(center[1] - rad, 0, grid.cols)), int(np.clip(center[1] + rad + 1, 0, grid.cols))
    win = (slice(r0, r1), slice(c0, c1))
    pa, ps, rho = pa[win], ps[win], rho_full[win]
    alpha = np.rad2deg(np.arctan2(ps, pa)) % 360.0
    endo, epi = heart_radii(spec, alpha, z, systole)
    rvd, _ = _rv_depth(spec, alpha, z)
    in_span = rvd > 0
    rv_wall = 2.5 + 1.0 * np.sin(np.deg2rad(alpha) * 5 + spec.index) ** 2
    fat = h.fat * np.clip(1.6 * np.cos(2 * np.deg2rad(alpha) + h.rv_skew * 3) + 0.3 * np.cos(5 * np.deg2rad(alpha)),
                          0, None) * (1.4 - 0.6 * zf)
    rv_out = epi + rvd + np.where(in_span, rv_wall, 0.0)
    sub = img[win]
    heart_env = rho < rv_out + fat
    sub[heart_env] = t["fat"]
    sub[in_span & (rho < rv_out)] = t["myo"]
    rv = in_span & (rho >= epi) & (rho < epi + rvd)
    sub[rv] = t["blood"]
    myo = (rho >= endo) & (rho < epi)
    blood = rho < endo
    sub[myo] = t["myo"]
    sub[blood] = (t["blood"] * (0.95 + 0.05 * np.cos(np.deg2rad(alpha) + 1.0)))[blood]
    if 0.15 < zf < 0.8:
        for ang in h.papillary_deg:
            a = np.deg2rad(ang)
            r_e = heart_radii(spec, ang, z, systole)[0]
            c = (r_e - h.papillary_r * 0.9) * np.array([np.cos(a), np.sin(a)])
            sub[blood & (np.hypot(pa - c[0], ps - c[1]) < h.papillary_r * (1 + systole * 0.3))] = t["myo"]
    trab = blood & (rho > endo - 2.5) & (np.cos(np.deg2rad(alpha) * 23 + 7 * np.sin(np.deg2rad(alpha) * 3)) > 0.6)
    sub[trab] = 0.5 * (t["myo"] + t["blood"])
    depth = np.clip((rho - endo) / (epi - endo), 0, 1)
    scar_w = mvo_w = np.zeros(sub.shape, bool)
    if spec.scar is not None and contrast != "ssfp" and spec.scar.z_lo - 4 < z < spec.scar.z_hi + 4:
        w, wm = scar_weight(spec.scar, alpha, depth, z)
        w, wm = w * myo, wm * myo
        sv = spec.scar.contrast * t["blood"] * (1 + 0.12 * _smooth_field(rng, sub.shape, 4))
        sub = np.where(w > 0, sub * (1 - w) + sv * w, sub)
        sub = np.where(wm > 0, sub * (1 - wm) + (t["myo"] + 0.05) * wm, sub)
        scar_w, mvo_w = w > 0.5, wm > 0.5
    img[win] = sub

    def full(m: np.ndarray, dtype=np.uint8) -> np.ndarray:
        out = np.zeros(yy.shape, dtype)
        out[win] = m
        return out

    # acquisition: partial volume, texture, coil bias
    img = ndimage.gaussian_filter(img, 0.65)
    img = img * (1 + 0.07 * _smooth_field(rng, yy.shape) * (img != 0))
    lung_dots = (rng.random(yy.shape) < 0.01) & (np.abs(img - t["lung"]) < 0.02) & inside
    img += ndimage.gaussian_filter(lung_dots.astype(np.float32), 0.8) * 0.9 * t["blood"]
    yn = np.linspace(-1, 1, grid.rows, dtype=np.float32)[:, None]
    xn = np.linspace(-1, 1, grid.cols, dtype=np.float32)[None, :]
    b = body.bias
    img = img * np.exp(b[0] * yn + b[1] * xn + b[2] * yn * xn - 0.4 * abs(b[3]) * (yn**2 + xn**2))
    if body.ghost > 0:
        src = ndimage.gaussian_filter(img * full(heart_env, np.float32), 2.0)
        axis = 0 if grid.rows <= grid.cols else 1
        sh = img.shape[axis] // 3
        img = img + body.ghost * (np.roll(src, sh, axis) + np.roll(src, -sh, axis))
    if body.streak:
        ang = spec.index * 0.7
        dist = (yy * np.cos(ang) + xx * np.sin(ang)) - 20.0
        img = img + 0.25 * t["blood"] * np.exp(-0.5 * (dist / 1.5) ** 2) * np.cos(dist)
    sigma = body.noise * t["blood"]
    if contrast == "psir":
        img = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    else:
        img = np.hypot(np.abs(img) + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
    truth: dict = {}
    if with_truth:
        a_ant = h.alpha_ant
        a_inf = h.alpha_ant + h.rvip_span
        pts = []
        for a_deg in (a_ant, a_inf):
            r_epi = float(heart_radii(spec, a_deg, z, systole)[1])
            d = r_epi * (np.cos(np.deg2rad(a_deg)) * ant + np.sin(np.deg2rad(a_deg)) * sep) / grid.spacing
            pts.append([float(center[0] + d[0]), float(center[1] + d[1])])
        truth = {"myocardium": full(myo), "blood_pool": full(blood), "rv": full(rv), "scar": full(scar_w),
                 "mvo": full(mvo_w), "rvip_px": pts, "lv_center_px": [float(center[0]), float(center[1])],
                 "alpha_deg": full(alpha, np.float32)}
    return img.astype(np.float32), truth


def render_plane(spec: PatientSpec, origin: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, rows: int,
                 cols: int, spacing: float, rng: np.random.Generator, contrast: str = "ssfp") -> np.ndarray:
    """Crude 3-D-consistent view on any plane (localizers, long-axis LGE): body, lungs, liver, heart ellipsoids."""
    g, h = spec.geometry, spec.heart
    t = SSFP if contrast == "ssfp" else spec.body.tissue
    ii, jj = np.mgrid[0:rows, 0:cols].astype(np.float32)
    p = origin[None, None] + (jj[..., None] * row_dir + ii[..., None] * col_dir) * spacing  # (rows, cols, 3)
    u, a3, s3 = (np.asarray(v) for v in (g.u, g.ant, g.sep))
    base = np.asarray(g.base_center)
    img = np.full((rows, cols), t["air"], np.float32)
    body_c = base + np.array([-40.0, 45.0, 0.0])
    img[((p[..., 0] - body_c[0]) / 175) ** 2 + ((p[..., 1] - body_c[1]) / 120) ** 2 < 1] = t["mediastinum"]
    for sx in (-95.0, 85.0):
        lc = body_c + np.array([sx, 5.0, 60.0])
        img[((p - lc) ** 2 / np.array([55.0, 75.0, 110.0]) ** 2).sum(-1) < 1] = t["lung"]
    lv_c = base + body_c * 0  # liver under the right hemidiaphragm
    img[((p - (lv_c + np.array([-90.0, 30.0, -90.0]))) ** 2 / np.array([90.0, 80.0, 70.0]) ** 2).sum(-1) < 1] = \
        t["liver"]
    d = p - base
    s = d @ u  # along the long axis
    q = np.sqrt(np.maximum((d**2).sum(-1) - s**2, 0))
    f = np.sqrt(np.clip(1 - (s / h.length) ** 2, 0, 1))
    r_endo, r_epi = h.r_base * f, h.r_base * f + h.thickness
    heart_env = (s > -45) & (s < h.length + h.thickness) & (q < r_epi + h.rv_depth + 8)
    img[heart_env] = t["fat"]
    rv_side = (d @ s3) > 0
    img[heart_env & rv_side & (s > -5) & (q < r_epi + h.rv_depth * (1 - 0.5 * s / h.length))] = t["blood"]
    img[(s > -45) & (s < 0) & (q < h.r_base * 1.3)] = t["blood"]  # atria
    img[(s >= -2) & (s < h.length + h.thickness * f.clip(0.5)) & (q < r_epi)] = t["myo"]
    img[(s >= 0) & (q < r_endo)] = t["blood"]
    _ = a3
    img = ndimage.gaussian_filter(img, 0.8)
    return np.hypot(img + rng.normal(0, 0.04, img.shape), rng.normal(0, 0.04, img.shape)).astype(np.float32)
