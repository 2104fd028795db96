"""Scar patterns as continuous fields over the heart frame (alpha deg, transmural depth 0..1, z mm from base).

Ischaemic scar grows as a wave front from the endocardium (transmural extent largest at the territory centre,
ragged edges, contiguous along z, optional microvascular-obstruction core); non-ischaemic scar is a mid-wall
septal stripe, a subepicardial inferolateral rim or patchy RV-insertion-point enhancement. ``aha_segment`` is
the pure AHA sector rule the phantom uses:

- basal / mid: six 60 deg sectors starting at the anterior RVIP and running through the septum:
  2 anteroseptal, 3 inferoseptal, 4 inferior, 5 inferolateral, 6 anterolateral, 1 anterior (mid: +6);
- apical: four 90 deg sectors centred on the septal bisector of the two RVIPs: 14 septal, 15 inferior,
  16 lateral, 13 anterior; the apical cap (beyond the cavity) is 17.
"""

from __future__ import annotations

import numpy as np

from lgeclip.phantom.spec import SLICE_MM, HeartSpec, ScarSpec

LEVEL_OFFSET = {"basal": 0, "mid": 6}
CAP_MM = 4.0  # the last CAP_MM before the cavity closes, and beyond, count as apical cap (segment 17)


def aha_segment(alpha_deg, alpha_ant: float, alpha_inf: float, level: str) -> np.ndarray:
    """AHA segment number (1..16) for angles ``alpha_deg`` (heart frame) at ``level`` (basal/mid/apical)."""
    a = np.asarray(alpha_deg, dtype=float)
    if level in LEVEL_OFFSET:
        k = np.floor(((a - alpha_ant) % 360.0) / 60.0).astype(int) % 6
        return np.array([2, 3, 4, 5, 6, 1])[k] + LEVEL_OFFSET[level]
    if level != "apical":
        raise ValueError(f"unknown level {level!r}")
    mid = alpha_ant + ((alpha_inf - alpha_ant) % 360.0) / 2.0
    k = np.floor(((a - (mid - 45.0)) % 360.0) / 90.0).astype(int) % 4
    return np.array([14, 15, 16, 13])[k]


def anatomical_level(z, length: float) -> np.ndarray:
    """'basal' / 'mid' / 'apical' / 'cap' for positions z (mm from base): thirds of the cavity, then the cap."""
    lc = length - CAP_MM
    z = np.asarray(z, dtype=float)
    idx = np.clip(np.floor(3 * z / lc), 0, 2).astype(int)
    out = np.array(["basal", "mid", "apical"])[idx]
    return np.where(z >= lc, "cap", out)


def _wrap(d):
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def _rough(scar: ScarSpec, alpha_deg, z) -> np.ndarray:
    a = np.deg2rad(alpha_deg)
    out = np.zeros(np.broadcast(a, z).shape, dtype=np.float32)
    for ka, kz, amp, ph in scar.rough:
        out += amp * np.cos(ka * a + kz * np.asarray(z) / 10.0 + ph)
    return out


def scar_weight(scar: ScarSpec, alpha_deg, depth, z) -> tuple[np.ndarray, np.ndarray]:
    """Soft scar and MVO memberships (0..1; > 0.5 = inside) at heart-frame points (arrays broadcast)."""
    alpha_deg, depth = np.asarray(alpha_deg, dtype=np.float32), np.asarray(depth, dtype=np.float32)
    r = _rough(scar, alpha_deg, z)
    span = max(scar.z_hi - scar.z_lo, 1e-3)
    zt = np.clip(np.minimum(z - scar.z_lo, scar.z_hi - z) / 4.0 + 0.5, 0.0, 1.0)
    hw = scar.halfwidth_deg * (1.0 + 0.25 * np.sin(2 * np.pi * (z - scar.z_lo) / max(span, 20.0) + scar.rough[0][3]))
    ang = np.max([1.0 - np.abs(_wrap(alpha_deg - c)) / hw for c in scar.centers_deg], axis=0)
    prof = np.clip(ang + 0.12 * r, 0.0, 1.0) * zt
    soft = 0.06
    mvo = np.zeros_like(depth)
    if scar.pattern == "ischaemic":
        t = scar.tmax * np.sqrt(prof) + 0.05 * r
        w = np.clip((t - depth) / (2 * soft) + 0.5, 0, 1) * (t > 0.06)
        if scar.mvo:
            zc = np.clip(np.minimum(z - scar.z_lo, scar.z_hi - z) / (0.25 * span), 0, 1)
            tm = 0.5 * t * (prof > 0.5) * zc
            mvo = np.clip((tm - depth) / (2 * soft) + 0.5, 0, 1) * (tm > 0.08)
    elif scar.pattern == "subepicardial":
        t = scar.tmax * np.sqrt(prof) + 0.05 * r
        w = np.clip((depth - (1.0 - t)) / (2 * soft) + 0.5, 0, 1) * (t > 0.06)
    else:  # mid-wall stripe / RV insertion point patches
        c = scar.band_center + 0.08 * r
        h = scar.tmax * prof**0.3
        w = np.clip((h - np.abs(depth - c)) / (2 * soft) + 0.5, 0, 1) * (h > 0.04)
    if scar.patchy > 0:
        w = w * np.clip((r + 0.35 - scar.patchy) / 0.15 + 0.5, 0, 1)
    return w.astype(np.float32), (mvo * (w > 0.5)).astype(np.float32)


def scar_segments(scar: ScarSpec | None, heart: HeartSpec, min_frac: float = 0.02) -> list[int]:
    """AHA segments (1..17) holding scar anywhere in the 3-D heart (imaged or not)."""
    if scar is None:
        return []
    z = np.arange(0.0, heart.length + heart.thickness, 1.5)
    a = np.arange(0.0, 360.0, 3.0)
    d = np.arange(0.025, 1.0, 0.05)
    zz, aa, dd = np.meshgrid(z, a, d, indexing="ij")
    w, _ = scar_weight(scar, aa, dd, zz)
    inside = w > 0.5
    lev = anatomical_level(z, heart.length)
    a_inf = heart.alpha_ant + heart.rvip_span
    segs: dict[int, list[int]] = {}
    for i, lv in enumerate(lev):
        if not inside[i].any():
            continue
        if lv == "cap":
            segs.setdefault(17, [0, 0])[0] += int(inside[i].sum())
            segs[17][1] += inside[i].size
            continue
        sec = aha_segment(a, heart.alpha_ant, a_inf, str(lv))
        for s in np.unique(sec):
            m = inside[i][sec == s]
            acc = segs.setdefault(int(s), [0, 0])
            acc[0] += int(m.sum())
            acc[1] += m.size
    # fraction relative to the whole segment volume (all z at that level)
    out = []
    for s, (hit, _) in segs.items():
        lv = "cap" if s == 17 else ("basal" if s <= 6 else "mid" if s <= 12 else "apical")
        nz = max(int((lev == lv).sum()), 1)
        per_seg = nz * len(d) * len(a) / (1 if s == 17 else (6 if s <= 12 else 4))
        if hit / per_seg >= min_frac:
            out.append(s)
    return sorted(out)


def draw_scar(rng: np.random.Generator, pattern: str, heart: HeartSpec, z_slices: np.ndarray,
              hidden: str | None) -> ScarSpec:
    """Random scar of ``pattern``; ``hidden`` puts it where no slice centre in ``z_slices`` sees it."""
    L, aa = heart.length, heart.alpha_ant
    ai = aa + heart.rvip_span
    rough = [[float(k), float(rng.integers(-3, 4)), float(rng.normal(0, 0.35 / k**0.4)), float(rng.uniform(0, 6.3))]
             for k in (2, 3, 5, 7, 9)]
    territory, patchy, mvo, band = None, 0.0, False, 0.5
    if pattern == "ischaemic":
        territory = str(rng.choice(["LAD", "RCA", "LCx"], p=[0.45, 0.3, 0.25]))
        c = {"LAD": aa - 10, "RCA": aa + 130, "LCx": aa + 240}[territory] + rng.normal(0, 12)
        centers, hw = [c], rng.uniform(30, 70)
        if territory == "LAD":
            z_lo, z_hi = rng.uniform(0.2, 0.6) * L, rng.uniform(0.85, 1.08) * L
        else:
            z_lo, z_hi = rng.uniform(0.0, 0.3) * L, rng.uniform(0.45, 0.8) * L
        tmax = float(rng.choice([rng.uniform(0.25, 0.5), rng.uniform(0.5, 0.85), rng.uniform(0.9, 1.3)]))
        mvo = bool(tmax > 0.7 and rng.random() < 0.35)
        contrast = rng.uniform(1.2, 2.0) if rng.random() < 0.75 else rng.uniform(0.8, 1.2)
    elif pattern == "mid-wall":
        centers, hw = [aa + heart.rvip_span / 2 + rng.normal(0, 8)], heart.rvip_span / 2 - rng.uniform(0, 15)
        z_lo, z_hi = rng.uniform(0.0, 0.25) * L, rng.uniform(0.45, 0.75) * L
        tmax, band, contrast = rng.uniform(0.16, 0.3), rng.uniform(0.4, 0.6), rng.uniform(0.9, 1.7)
        patchy = float(rng.choice([0.0, rng.uniform(0.0, 0.3)]))
    elif pattern == "subepicardial":
        centers, hw = [aa + 205 + rng.normal(0, 12)], rng.uniform(35, 65)
        z_lo, z_hi = rng.uniform(0.0, 0.3) * L, rng.uniform(0.45, 0.8) * L
        tmax, contrast = rng.uniform(0.25, 0.5), rng.uniform(0.8, 1.7)
        patchy = float(rng.choice([0.0, rng.uniform(0.0, 0.35)]))
    elif pattern == "rvip":
        which = rng.choice(["ant", "inf", "both"], p=[0.25, 0.45, 0.3])
        centers = [c for c, k in ((aa + 6, "ant"), (ai - 6, "inf")) if which in (k, "both")]
        hw = rng.uniform(10, 20)
        z_lo, z_hi = rng.uniform(0.0, 0.3) * L, rng.uniform(0.45, 0.8) * L
        tmax, band, contrast = rng.uniform(0.25, 0.4), rng.uniform(0.4, 0.6), rng.uniform(0.8, 1.6)
        patchy = float(rng.uniform(0.0, 0.3))
    else:
        raise ValueError(f"unknown scar pattern {pattern!r}")
    z_slices = np.asarray(z_slices, dtype=float)
    if hidden == "apical-cap":
        territory, centers = "LAD", [aa - 10 + rng.normal(0, 10)]
        hw, z_lo, z_hi, tmax = rng.uniform(60, 110), z_slices[-1] + SLICE_MM / 2 + 1.0, L + heart.thickness, 1.2
    elif hidden == "basal":
        z_lo, z_hi = 0.0, z_slices[0] - SLICE_MM / 2 - 1.0
    elif not np.any((z_slices > z_lo + 3) & (z_slices < z_hi - 3)):
        zm = z_slices[len(z_slices) // 2]
        z_lo, z_hi = min(z_lo, zm - 8), max(z_hi, zm + 8)
    return ScarSpec(pattern=pattern, territory=territory, centers_deg=[float(c) for c in centers],
                    halfwidth_deg=float(hw), z_lo=float(z_lo), z_hi=float(z_hi), tmax=float(tmax),
                    band_center=float(band), rough=rough, patchy=patchy, mvo=mvo, contrast=float(contrast),
                    hidden=hidden)


def scar_facts(scar: ScarSpec | None, heart: HeartSpec) -> dict:
    """Report facts about the scar: segments, transmurality wording, MVO."""
    if scar is None:
        return {"segments": [], "transmurality": None, "mvo": False}
    if scar.pattern == "ischaemic":
        tr = "transmural" if scar.tmax >= 0.9 else (">50%" if scar.tmax >= 0.5 else
                                                   ("subendocardial" if scar.tmax < 0.38 else "<50%"))
    else:
        tr = "subepicardial" if scar.pattern == "subepicardial" else "mid-wall"
    return {"segments": scar_segments(scar, heart), "transmurality": tr, "mvo": bool(scar.mvo)}
