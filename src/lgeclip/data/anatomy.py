"""Training samples for the anatomy nets, read from cohort folders (manifest + slice npz with truth).

Samples mirror the two-pass inference of ``lgeclip.anatomy.predictor``: LV crops of ``view.pixel_mm`` mm pixels
around the truth LV centre (jittered, rotated, flipped, intensity-augmented) and, for the segmentation net,
some whole-image views (pass 1). Flips move the RV insertion points; by default they keep their names (the
anterior RVIP stays channel 0: "anterior is up"), with ``aug.flip_swaps_rvip`` the names follow handedness instead
(a mirrored view swaps them). ``aug.appearance`` re-renders views from their labels (SynthSeg-style) so that cine and
phantom anatomy look like any LGE; ``aug.anisotropy`` stretches them. Each item draws its randomness from
``np.random.default_rng([seed, epoch, index])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lgeclip.anatomy.geometry import lv_center, transmural_depth
from lgeclip.anatomy.predictor import CropGeometry, ViewCfg, crop_geometry, normalise_intensity, whole_image_geometry
from lgeclip.io.cohort import load_slice, read_manifest
from lgeclip.io.splits import patient_split, splits_digest

SPLITS = ("train", "val", "test")


@dataclass
class AppearanceCfg:
    """Label-driven appearance randomisation (the SynthSeg idea, on real textures): with probability ``prob`` each
    labelled region (background, LV blood pool, myocardium, RV cavity) gets its own random mean and contrast, so
    cine bSSFP and phantom anatomy take the looks of any LGE: myocardium nulled dark or grey, bright blood, bright
    enhancement patches inside the wall (scar is myocardium too), a smooth multiplicative bias field, blur, and
    occasionally inverted contrast (PSIR vs magnitude). Intensities are in the normalised [0, 1] range."""

    prob: float = 0.0  # fraction of training samples re-rendered (0 = off)
    blood: tuple[float, float] = (0.55, 1.0)  # LV blood pool mean
    rv_delta: float = 0.1  # RV cavity mean = blood mean + U(-d, d)
    myo_null_prob: float = 0.6  # myocardium nulled (dark) rather than grey
    myo_dark: tuple[float, float] = (0.0, 0.15)
    myo_grey: tuple[float, float] = (0.2, 0.5)
    texture: tuple[float, float] = (0.2, 1.0)  # in-region contrast kept from the source image
    background_gain: tuple[float, float] = (0.5, 1.3)
    patch_prob: float = 0.5  # bright enhancement patches inside the myocardium
    patch_max: int = 3
    patch_radius_mm: tuple[float, float] = (3.0, 10.0)
    bias: float = 0.3  # bias field: exp(N(0, bias)) on a 4x4 grid, smoothly upsampled
    blur_px: float = 1.0  # Gaussian blur sigma drawn in [0, blur_px]
    invert_prob: float = 0.1

    def __post_init__(self) -> None:
        for name in ("prob", "myo_null_prob", "patch_prob", "invert_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"aug.appearance.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("blood", "myo_dark", "myo_grey", "texture", "background_gain", "patch_radius_mm"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"aug.appearance.{name} must be an ordered non-negative range, got {(lo, hi)}")


@dataclass
class ScarPaintCfg:
    """Scar painted into the wall of a training view, the label kept myocardium: the segmentation net must learn
    that enhancement as bright as (or brighter than) the blood pool is wall, not cavity. Without it the demo's net
    gave 41 % of the phantom's truth scar pixels to the blood pool (29 % to the wall). A region of the wall is
    chosen as the synthetic-scar controller does for the classifier: an angular sector around the LV centre and a
    band of wall depth (subendocardial from the endocardium outwards, transmural, mid-wall or subepicardial), with
    a smooth border; its intensity is the view's blood-pool level times ``level`` plus the source texture."""

    prob: float = 0.0  # fraction of training views painted (0 = off)
    sector_deg: tuple[float, float] = (30.0, 150.0)  # angular extent of the scar
    # pattern weights: subendocardial / transmural (ischaemic, from the endocardium), mid-wall, subepicardial
    patterns: tuple[float, float, float, float] = (0.45, 0.25, 0.15, 0.15)
    depth: tuple[float, float] = (0.3, 1.0)  # extent t across the wall: subendocardial depth <= t, mid-wall
    # |depth - 0.5| <= t / 3, subepicardial depth >= 1 - t / 2 (depth 0 at the endocardium, 1 at the epicardium)
    level: tuple[float, float] = (0.8, 1.3)  # scar mean / blood-pool mean
    smooth_px: float = 1.0  # Gaussian softening of the painted region

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1:
            raise ValueError(f"aug.scar.prob must be in [0, 1], got {self.prob}")
        for name in ("sector_deg", "level", "depth"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"aug.scar.{name} must be an ordered positive range, got {(lo, hi)}")
        w = np.asarray(self.patterns, float)
        if w.shape != (4,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"aug.scar.patterns must be 4 non-negative weights, got {self.patterns}")


def paint_scar(img: np.ndarray, labels: np.ndarray, cfg: ScarPaintCfg, rng: np.random.Generator) -> np.ndarray:
    """``img`` (S, S) in [0, 1] with a bright scar painted into the wall of ``labels`` (1 blood pool, 2 myocardium);
    unchanged when the view has no wall or no blood pool. See :class:`ScarPaintCfg`."""
    from scipy import ndimage as ndi

    wall, blood = labels == 2, labels == 1
    if wall.sum() < 10 or not blood.any():
        return img
    depth = transmural_depth(wall, blood)  # 0 at the endocardium .. 1 at the epicardium
    cy, cx = lv_center(wall, blood)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    ang = np.degrees(np.arctan2(yy - cy, xx - cx))
    start, width = rng.uniform(-180, 180), rng.uniform(*cfg.sector_deg)
    in_sector = np.mod(ang - start, 360.0) <= width
    w = np.asarray(cfg.patterns, float)
    pattern = int(rng.choice(4, p=w / w.sum()))
    t = rng.uniform(*cfg.depth)
    if pattern == 0:
        band = depth <= t
    elif pattern == 1:
        band = np.ones_like(wall)
    elif pattern == 2:
        band = np.abs(depth - 0.5) <= t / 3
    else:
        band = depth >= 1 - t / 2
    region = wall & in_sector & band
    if region.sum() < 3:
        return img
    soft = np.clip(ndi.gaussian_filter(region.astype(np.float32), cfg.smooth_px) * 1.5, 0, 1) * wall
    level = float(np.median(img[blood])) * rng.uniform(*cfg.level)
    tex = img - float(img[region].mean())
    out = img * (1 - soft) + (level + 0.5 * tex) * soft
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass
class AnatomyAugCfg:
    """Random view and intensity augmentation of training samples (validation samples are not augmented)."""

    jitter_mm: float = 10.0  # crop centre offset from the truth LV centre, uniform in a disc of this radius
    rotate_deg: float = 180.0  # rotation uniform in [-rotate_deg, rotate_deg]
    flip_lr_prob: float = 0.5  # mirror left-right
    flip_ud_prob: float = 0.0  # mirror up-down
    zoom: tuple[float, float] = (0.85, 1.15)  # pixel size multiplier range (anatomy size variation)
    whole_image_prob: float = 0.25  # fraction of whole-image (pass-1) views; segmentation only
    whole_shift: float = 0.08  # pass-1 views: field centre shift, fraction of the field
    gamma: tuple[float, float] = (0.7, 1.5)  # intensity gamma range
    contrast: tuple[float, float] = (0.8, 1.2)  # intensity scale range
    brightness: float = 0.1  # additive offset, uniform in [-b, b]
    noise_std: float = 0.04  # additive Gaussian noise std drawn uniform in [0, noise_std]
    anisotropy: float = 0.0  # per-axis pixel size jitter: row and column scaled by exp(U(-a, a)) independently
    # names follow handedness: an odd number of flips swaps the anterior / inferior RVIP channels, so with full
    # rotation the net must name the points by the clockwise order of the RV arc (standard display), not by "up"
    flip_swaps_rvip: bool = False
    appearance: AppearanceCfg = field(default_factory=lambda: AppearanceCfg())
    scar: ScarPaintCfg = field(default_factory=lambda: ScarPaintCfg())
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("zoom", "gamma", "contrast"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"aug.{name} must be an ordered positive range, got {(lo, hi)}")
        for name in ("flip_lr_prob", "flip_ud_prob", "whole_image_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"aug.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.jitter_mm < 0 or self.rotate_deg < 0 or self.noise_std < 0 or self.brightness < 0:
            raise ValueError("aug.jitter_mm, rotate_deg, noise_std and brightness must be >= 0")
        if not 0 <= self.anisotropy <= 0.5:
            raise ValueError(f"aug.anisotropy must be in [0, 0.5], got {self.anisotropy}")
        if isinstance(self.appearance, dict):
            self.appearance = AppearanceCfg(**self.appearance)
        if isinstance(self.scar, dict):
            self.scar = ScarPaintCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.scar.items()})


@dataclass
class AnatomyDataCfg:
    """Which slices are used: the patient split is fold ``fold`` of each cohort's ``splits.json``."""

    fold: int = 0  # fold of every cohort's splits.json (lgeclip.io.splits), the same one the cache uses
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    val_split: str = "val"
    repeats: int = 4  # samples drawn per training slice per epoch
    # extra weight per --cohort (in the order given; empty = 1 each): e.g. [1, 4] draws every slice of the second
    # cohort 4x as often, so a small real labelled cohort is not drowned by a large phantom
    cohort_repeats: list[int] = field(default_factory=list)
    max_val_slices: int = 256  # cap on validation slices (evenly spaced)

    def __post_init__(self) -> None:
        if self.fold < 0:
            raise ValueError(f"data.fold must be >= 0, got {self.fold}")
        bad = [s for s in [*self.train_splits, self.val_split] if s not in SPLITS]
        if bad:
            raise ValueError(f"data: unknown split name(s) {bad}; known {SPLITS}")
        if self.repeats < 1:
            raise ValueError(f"data.repeats must be >= 1, got {self.repeats}")
        if any(int(r) < 1 for r in self.cohort_repeats):
            raise ValueError(f"data.cohort_repeats must be integers >= 1, got {self.cohort_repeats}")


@dataclass
class AnatomySlice:
    """One slice with truth, in memory. ``labels``: uint8 (H, W) 0 background / 1 blood pool / 2 myocardium."""

    slice_id: str
    patient_key: str
    cohort: str
    split: str
    image: np.ndarray  # (H, W) float32 in [0, 1] (percentile-normalised)
    spacing: tuple[float, float]
    labels: np.ndarray
    center: tuple[float, float]  # truth LV centre (row, col)
    rvip: np.ndarray  # (2, 2) float32, NaN if unknown
    labels_rv: np.ndarray | None = None  # ``labels`` with the RV cavity as 3, where the cohort labels the RV


def cohort_splits(cohort: Path, fold: int = 0) -> dict[str, str]:
    """patient_key -> split for one cohort: fold ``fold`` of its ``splits.json`` (the file the cache reads too)."""
    return patient_split(cohort, fold)


def load_anatomy_slices(cohorts: list[Path], need_rvip: bool, cfg: AnatomyDataCfg, view: ViewCfg,
                        splits: tuple[str, ...] = SPLITS) -> tuple[list[AnatomySlice], dict]:
    """Slices with myocardium + blood-pool truth (and RVIP truth when ``need_rvip``) of ``splits``.

    Returns (slices, stats): per cohort the counts used / skipped for each reason, the cohort folder, the digest
    of its ``splits.json``, the fold and the patients per split."""
    out: list[AnatomySlice] = []
    stats: dict = {"cohorts": {}, "n_slices": 0}
    for cohort in cohorts:
        cohort = Path(cohort)
        split = cohort_splits(cohort, cfg.fold)
        c = {"used": 0, "no_masks": 0, "empty_lv": 0, "no_rvip": 0, "other_split": 0,
             "cohort_dir": str(cohort.resolve()), "splits_digest": splits_digest(cohort), "fold": cfg.fold,
             "patients": {s: sorted(k for k, v in split.items() if v == s) for s in SPLITS}}
        for rec in read_manifest(cohort):
            s = split[rec.patient_key]
            if s not in splits:
                c["other_split"] += 1
                continue
            if not rec.has_masks:
                c["no_masks"] += 1
                continue
            arr = load_slice(cohort / rec.image_path)
            if "myocardium" not in arr or "blood_pool" not in arr:
                c["no_masks"] += 1
                continue
            myo, blood = arr["myocardium"] > 0, arr["blood_pool"] > 0
            if not myo.any():
                c["empty_lv"] += 1
                continue
            rvip = np.asarray(arr.get("rvip", np.full((2, 2), np.nan)), np.float32).reshape(2, 2)
            if need_rvip and not np.all(np.isfinite(rvip)):
                c["no_rvip"] += 1
                continue
            labels = np.zeros(myo.shape, np.uint8)
            labels[blood] = 1
            labels[myo] = 2
            sp = np.asarray(arr["spacing_mm"], float).reshape(-1)
            spacing = (float(sp[0]), float(sp[-1]))
            labels_rv = np.where((arr["rv"] > 0) & (labels == 0), 3, labels).astype(np.uint8) if "rv" in arr else None
            out.append(AnatomySlice(rec.slice_id, rec.patient_key, str(cohort), s,
                                    normalise_intensity(arr["image"], view.percentiles), spacing, labels,
                                    lv_center(myo, blood), rvip, labels_rv))
            c["used"] += 1
        stats["cohorts"][str(cohort)] = c
    stats["n_slices"] = len(out)
    return out, stats


def randomise_appearance(img: np.ndarray, labels: np.ndarray, pixel_mm: float, cfg: AppearanceCfg,
                         rng: np.random.Generator) -> np.ndarray:
    """Re-render a view ``img`` (S, S) in [0, 1] from its ``labels`` (0 background, 1 blood pool, 2 myocardium,
    3 RV cavity): per region a random mean plus a random fraction of the source texture, soft region borders,
    enhancement patches in the myocardium, bias field and blur (see :class:`AppearanceCfg`)."""
    from scipy import ndimage as ndi

    blood = rng.uniform(*cfg.blood)
    myo = rng.uniform(*(cfg.myo_dark if rng.random() < cfg.myo_null_prob else cfg.myo_grey))
    means = {1: blood, 2: myo, 3: float(np.clip(blood + rng.uniform(-cfg.rv_delta, cfg.rv_delta), 0, 1))}
    gain = rng.uniform(*cfg.background_gain)
    out = img * gain  # background keeps its texture, rescaled
    for c, m in means.items():
        region = labels == c
        if not region.any():
            continue
        soft = ndi.gaussian_filter(region.astype(np.float32), 0.7)
        tex = (img - float(img[region].mean())) * rng.uniform(*cfg.texture)
        out = out * (1 - soft) + (m + tex) * soft
    wall = labels == 2
    if wall.any() and rng.random() < cfg.patch_prob:
        rr, cc = np.nonzero(wall)
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        patch = np.zeros(img.shape, np.float32)
        for _ in range(int(rng.integers(1, cfg.patch_max + 1))):
            i = int(rng.integers(len(rr)))
            rad = rng.uniform(*cfg.patch_radius_mm) / pixel_mm
            patch = np.maximum(patch, np.exp(-((yy - rr[i]) ** 2 + (xx - cc[i]) ** 2) / (2 * rad**2)))
        level = rng.uniform(0.6, 1.0) * blood
        soft_wall = ndi.gaussian_filter(wall.astype(np.float32), 0.7)
        out = out + soft_wall * patch * max(level - myo, 0.0)
    if cfg.bias > 0:
        field_ = ndi.zoom(rng.normal(0, cfg.bias, (4, 4)), np.array(img.shape) / 4.0, order=3, mode="nearest")
        out = out * np.exp(field_[: img.shape[0], : img.shape[1]])
    if cfg.blur_px > 0:
        out = ndi.gaussian_filter(out, rng.uniform(0, cfg.blur_px))
    out = np.clip(out, 0.0, 1.0)
    if rng.random() < cfg.invert_prob:
        out = 1.0 - out
    return out.astype(np.float32)


def _augment_intensity(img: np.ndarray, aug: AnatomyAugCfg, rng: np.random.Generator) -> np.ndarray:
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(*aug.gamma)
    img = img * rng.uniform(*aug.contrast) + rng.uniform(-aug.brightness, aug.brightness)
    img = img + rng.normal(0.0, rng.uniform(0.0, aug.noise_std), img.shape)
    return img.astype(np.float32)


class _AnatomyDataset(Dataset):
    def __init__(self, slices: list[AnatomySlice], view: ViewCfg, aug: AnatomyAugCfg, train: bool, seed: int = 0,
                 repeats: int = 1) -> None:
        if not slices:
            raise ValueError("anatomy dataset: no usable slices (need cohorts with truth masks / RVIPs)")
        self.slices, self.view, self.aug, self.train = slices, view, aug, train
        self.seed, self.epoch, self.repeats = seed, 0, repeats if train else 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.slices) * self.repeats

    def _geometry(self, s: AnatomySlice, rng: np.random.Generator, whole: bool) -> CropGeometry:
        v, a = self.view, self.aug
        if not self.train or not a.enabled:
            if whole:
                return whole_image_geometry(s.image.shape, s.spacing, v.size)
            return crop_geometry(s.center, s.spacing, v.size, v.pixel_mm)
        angle = rng.uniform(-a.rotate_deg, a.rotate_deg)
        flr, fud = rng.random() < a.flip_lr_prob, rng.random() < a.flip_ud_prob
        zoom = np.exp(rng.uniform(np.log(a.zoom[0]), np.log(a.zoom[1])))
        # anisotropy: the slice is seen as if its rows / columns had other pixel sizes (a stretched heart)
        spacing = s.spacing
        if a.anisotropy > 0:
            f = np.exp(rng.uniform(-a.anisotropy, a.anisotropy, 2))
            spacing = (s.spacing[0] * float(f[0]), s.spacing[1] * float(f[1]))
        if whole:
            shift = rng.uniform(-a.whole_shift, a.whole_shift, 2)
            return whole_image_geometry(s.image.shape, spacing, v.size, 1.0 / zoom, shift, angle, flr, fud)
        r, t = a.jitter_mm * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        center = (s.center[0] + r * np.cos(t) / s.spacing[0], s.center[1] + r * np.sin(t) / s.spacing[1])
        return crop_geometry(center, spacing, v.size, v.pixel_mm * zoom, angle, flr, fud)

    def _image(self, s: AnatomySlice, g: CropGeometry, rng: np.random.Generator) -> np.ndarray:
        img = g.sample(s.image)
        if self.train and self.aug.enabled:
            app = self.aug.appearance
            if app.prob > 0 and rng.random() < app.prob:
                lab = s.labels if s.labels_rv is None else s.labels_rv
                mm = float(np.sqrt(abs(np.linalg.det(g.matrix)) * s.spacing[0] * s.spacing[1]))
                img = randomise_appearance(img, g.sample_labels(lab, 4), mm, app, rng)
            # drawn only when enabled, so recipes without it keep their random streams
            if self.aug.scar.prob > 0 and rng.random() < self.aug.scar.prob:
                img = paint_scar(img, g.sample_labels(s.labels, 3), self.aug.scar, rng)
            img = _augment_intensity(img, self.aug, rng)
        return img


RV_UNKNOWN = 4  # segmentation target "background or RV cavity" on slices whose cohort does not label the RV


class SegmentationDataset(_AnatomyDataset):
    """Items ``{"image": (1, S, S) float32, "label": (1, S, S) int64, "whole": bool}`` (0 bg, 1 blood, 2 myo;
    with ``rv_class``: 3 RV cavity, and on slices without an RV label every background pixel is ``RV_UNKNOWN``).

    Validation items are the unaugmented LV crops at the truth centre."""

    def __init__(self, *args, rv_class: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rv_class = rv_class

    def __getitem__(self, index: int) -> dict:
        s = self.slices[index % len(self.slices)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        whole = self.train and self.aug.enabled and rng.random() < self.aug.whole_image_prob
        g = self._geometry(s, rng, whole)
        img = self._image(s, g, rng)
        if self.rv_class and s.labels_rv is not None:
            lab = g.sample_labels(s.labels_rv, 4)
        else:
            lab = g.sample_labels(s.labels, 3)
            if self.rv_class:
                lab[lab == 0] = RV_UNKNOWN
        return {"image": torch.from_numpy(img[None]), "label": torch.from_numpy(lab[None].astype(np.int64)),
                "whole": bool(whole)}


class LandmarkDataset(_AnatomyDataset):
    """Items ``{"image": (1, S, S), "points": (2, 2) view (row, col) of [anterior, inferior], "valid": (2,)}``.

    ``valid`` is 1 where the point lies inside the view. Heatmap targets are built on the batch by the task."""

    def __getitem__(self, index: int) -> dict:
        s = self.slices[index % len(self.slices)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        g = self._geometry(s, rng, whole=False)
        img = self._image(s, g, rng)
        pts = g.to_view(s.rvip).astype(np.float32)  # names kept under flips: row 0 stays anterior ...
        if self.train and self.aug.enabled and self.aug.flip_swaps_rvip and np.linalg.det(g.matrix) < 0:
            pts = pts[::-1].copy()  # ... unless names follow handedness: a mirrored view swaps them
        valid = np.all((pts >= 0) & (pts <= self.view.size - 1), axis=1) & np.all(np.isfinite(pts), axis=1)
        pts = np.nan_to_num(pts, nan=-1.0)
        return {"image": torch.from_numpy(img[None]), "points": torch.from_numpy(pts),
                "valid": torch.from_numpy(valid.astype(np.float32))}


def spaced_subset(items: list, n: int) -> list:
    """At most ``n`` items, evenly spaced (deterministic)."""
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def ring_slice(rng: np.random.Generator, shape: tuple[int, int] | None = None, spacing: float | None = None,
               noise: float = 0.03) -> dict[str, np.ndarray]:
    """A synthetic short-axis-like slice: bright LV blood disc, dark myocardial ring, bright RV crescent on the
    (rotated) left, RVIPs where the RV meets the epicardium (anterior = upper). Arrays as in a cohort npz."""
    h, w = shape or (int(rng.integers(112, 161)), int(rng.integers(112, 161)))
    sp = float(spacing or rng.uniform(1.8, 2.4))
    c = np.array([h / 2 + rng.uniform(-0.1, 0.1) * h, w / 2 + rng.uniform(-0.1, 0.1) * w])
    r_endo, t = rng.uniform(17, 25) / sp, rng.uniform(7, 11) / sp
    r_epi = r_endo + t
    theta = np.deg2rad(rng.normal(0, 15))
    u = np.array([np.sin(theta), -np.cos(theta)])  # LV -> RV direction (row, col): the left, rotated
    r_rv, d_rv = r_epi * rng.uniform(0.9, 1.2), r_epi * rng.uniform(1.15, 1.45)
    c_rv = c + d_rv * u
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.hypot(yy - c[0], xx - c[1])
    blood = dist <= r_endo
    myo = (dist > r_endo) & (dist <= r_epi)
    rv = (np.hypot(yy - c_rv[0], xx - c_rv[1]) <= r_rv) & (dist > r_epi + 1.5)
    # circle-circle intersection of the epicardium and the RV circle
    a = (r_epi**2 - r_rv**2 + d_rv**2) / (2 * d_rv)
    hh = np.sqrt(max(r_epi**2 - a**2, 0.0))
    base, perp = c + a * u, np.array([-u[1], u[0]])
    p1, p2 = base + hh * perp, base - hh * perp
    ant, inf = (p1, p2) if p1[0] < p2[0] else (p2, p1)
    img = np.full((h, w), 0.35, np.float32)
    img[rv], img[blood], img[myo] = 0.75, 0.9, 0.08
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return {"image": img * 1000.0, "spacing_mm": np.array([sp, sp], np.float32),
            "myocardium": myo.astype(np.uint8), "blood_pool": blood.astype(np.uint8), "rv": rv.astype(np.uint8),
            "rvip": np.array([ant, inf], np.float32)}


def write_ring_cohort(out: Path, n_patients: int = 6, slices_per_patient: int = 2, seed: int = 0,
                      with_rvip: bool = True, with_rv: bool = True) -> Path:
    """A tiny cohort of :func:`ring_slice` slices (manifest + npz) for tests and smoke runs; returns ``out``
    (``with_rvip`` / ``with_rv`` False: no RVIP truth / no RV mask, like EMIDEC)."""
    from lgeclip.io.cohort import LEVELS, SliceRecord, save_slice, write_manifest

    out = Path(out)
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n_patients):
        key = f"pt-ring{seed:03d}{p:04d}"
        for i in range(slices_per_patient):
            arr = ring_slice(rng)
            if not with_rvip:
                arr["rvip"] = np.full((2, 2), np.nan, np.float32)
            if not with_rv:
                arr.pop("rv")
            rel = f"slices/{key}/{i}.npz"
            image, sp = arr.pop("image"), (float(arr["spacing_mm"][0]), float(arr.pop("spacing_mm")[1]))
            save_slice(out / rel, image, sp, **arr)
            records.append(SliceRecord(key, LEVELS[i % 3], i, slices_per_patient, rel, sp, source="ring",
                                       has_masks=True))
    write_manifest(out, records)
    return out
