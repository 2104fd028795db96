"""Synthetic annulus slices (LV ring with AHA sectors, wall thirds, constant thickness) for tests, bench, preview."""

from __future__ import annotations

import numpy as np


def annulus_slice(size: int = 112, level: str = "mid", pixel_mm: float = 1.0, wall_mm: float = 9.0,
                  radius_mm: float = 22.0, center: tuple[float, float] | None = None, noise: float = 0.03,
                  label: str = "negative", seed: int = 0) -> dict:
    """One slice dict as the cache gives it: image (S, S) in [0, 1], myocardium, blood_pool, aha, layers,
    thickness (mm), level, label, pixel_mm.

    The myocardium is a ring of constant thickness ``wall_mm`` around a cavity of radius ``radius_mm``. Sectors
    follow the AHA numbering in image space with anterior up and septum on the image's left: basal/mid six 60 deg
    sectors (anterior, anteroseptal, inferoseptal, inferior, inferolateral, anterolateral), apical four 90 deg
    sectors (anterior, septal, inferior, lateral). Layers are radial thirds of the ring (1 endo .. 3 epi)."""
    rng = np.random.default_rng(seed)
    c0 = (size / 2 - 0.5, size / 2 - 0.5) if center is None else center
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(rr - c0[0], cc - c0[1]) * pixel_mm  # mm
    r_in, r_out = radius_mm, radius_mm + wall_mm
    myo = (dist >= r_in) & (dist < r_out)
    pool = dist < r_in
    theta = np.degrees(np.arctan2(-(rr - c0[0]), cc - c0[1])) % 360.0  # 90 = up (anterior), 180 = left (septum)
    if level == "apical":
        seg = np.array([16, 13, 14, 15], np.uint8)[(((theta + 45.0) % 360.0) // 90.0).astype(int)]
    else:
        offset = {"basal": 0, "mid": 6}[level]
        seg = (np.array([6, 1, 2, 3, 4, 5], np.uint8) + offset)[(theta // 60.0).astype(int)]
    aha = np.where(myo, seg, 0).astype(np.uint8)
    depth = np.clip((dist - r_in) / wall_mm, 0.0, 1.0 - 1e-6)
    layers = np.where(myo, 1 + (depth * 3).astype(np.uint8), 0).astype(np.uint8)
    thickness = np.where(myo, wall_mm, 0.0).astype(np.float32)
    image = np.where(pool, 0.35, np.where(myo, 0.12, 0.25)).astype(np.float32)
    image = image * (1 + 0.4 * np.exp(-((dist - r_out - 12) / 8) ** 2)).astype(np.float32)  # a bright rim outside
    image = np.clip(image + noise * rng.standard_normal(image.shape).astype(np.float32), 0, 1)
    image /= max(float(image.max()), 1e-6)
    return {"image": image, "myocardium": myo.astype(np.uint8), "blood_pool": pool.astype(np.uint8), "aha": aha,
            "layers": layers, "thickness": thickness, "level": level, "label": label, "pixel_mm": float(pixel_mm)}


def annulus_set(size: int, n: int = 16, seed: int = 0) -> list[dict]:
    """``n`` varied annulus slices at ``size`` px covering a 112 mm field (pixel_mm = 112 / size)."""
    rng = np.random.default_rng(seed)
    pixel_mm = 112.0 / size
    out = []
    for i in range(n):
        level = ("basal", "mid", "apical")[i % 3]
        shift = rng.uniform(-6, 6, 2) / pixel_mm
        out.append(annulus_slice(size, level=level, pixel_mm=pixel_mm, wall_mm=float(rng.uniform(6, 12)),
                                 radius_mm=float(rng.uniform(14, 26)),
                                 center=(size / 2 + shift[0], size / 2 + shift[1]), seed=seed * 1000 + i))
    return out

