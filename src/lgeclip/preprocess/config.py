"""``PreprocessCfg``: the paper's slice preprocessing settings, plausibility limits and the patient-split fold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PreprocessCfg:
    """Settings of ``preprocess_slice`` / ``build_cache`` (YAML recipes in ``configs/preprocess/``)."""

    pixel_mm: float = 1.0  # resampled pixel size before upsampling (mm)
    crop: int = 112  # crop side in resampled pixels, centred on the LV centre
    upsample: int = 1  # final grid = crop * upsample (2 = the paper's 224 px)
    percentile: float = 98.0  # intensity cap (percentile of the crop), then scale to [0, 1]
    orient: bool = True  # rotate so the anterior RVIP is above the inferior one (else the main variant = native)
    thickness_sigma_mm: float = 1.5  # Gaussian smoothing of the wall-thickness map (mm)
    # plausibility limits (a slice outside them is excluded with the reason)
    min_myo_area_mm2: float = 250.0  # myocardium area on the native grid
    max_myo_area_mm2: float = 9000.0
    min_rvip_distance_mm: float = 8.0  # distance between the two RVIPs
    max_rvip_myo_distance_mm: float = 10.0  # distance of each RVIP to the nearest myocardium pixel
    min_rvip_angle_deg: float = 20.0  # angle the RVIPs subtend at the LV centre (coincident / opposite = wrong)
    max_rvip_angle_deg: float = 178.0
    # keep a slice whose RVIPs are missing / implausible instead of excluding it: no orientation normalisation,
    # empty AHA map (so no synthetic scar is placed on it); the reason is kept in props["rvip_problem"]
    rvip_fallback: bool = False
    seg_tta: bool = False  # flip test-time augmentation of the segmentation net (4x its cost; +2.7 Dice on EMIDEC)
    anatomy_bf16: bool = True  # anatomy nets under bfloat16 autocast (half the CPU time; false: float32)
    # stack consistency (lgeclip.anatomy.stack): an RVIP more than this many degrees from the angle the nearest
    # plausible slices of its stack agree on moves there, and an implausible slice's points go onto its wall;
    # 0 = off
    rvip_stack_max_dev_deg: float = 0.0
    min_wall_mm: float = 1.5  # median wall thickness on the final grid
    max_wall_mm: float = 25.0
    min_inside_fraction: float = 0.5  # fraction of the crop that lies inside the native image
    fold: int = 0  # patient split: this fold of <cohort>/splits.json (lgeclip.io.splits), as the anatomy nets
    batch_size: int = 16  # slices per anatomy-predictor batch (when it offers predict_batch)

    def __post_init__(self) -> None:
        checks = [
            (self.pixel_mm > 0, "pixel_mm must be > 0"),
            (self.crop >= 16, "crop must be >= 16"),
            (self.upsample >= 1, "upsample must be >= 1"),
            (0 < self.percentile <= 100, "percentile must be in (0, 100]"),
            (self.thickness_sigma_mm >= 0, "thickness_sigma_mm must be >= 0"),
            (0 <= self.min_myo_area_mm2 < self.max_myo_area_mm2, "need 0 <= min_myo_area_mm2 < max_myo_area_mm2"),
            (self.min_rvip_distance_mm >= 0, "min_rvip_distance_mm must be >= 0"),
            (self.max_rvip_myo_distance_mm > 0, "max_rvip_myo_distance_mm must be > 0"),
            (0 <= self.min_rvip_angle_deg < self.max_rvip_angle_deg <= 180,
             "need 0 <= min_rvip_angle_deg < max_rvip_angle_deg <= 180"),
            (0 <= self.min_wall_mm < self.max_wall_mm, "need 0 <= min_wall_mm < max_wall_mm"),
            (0 < self.min_inside_fraction <= 1, "min_inside_fraction must be in (0, 1]"),
            (self.fold >= 0, "fold must be >= 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 <= self.rvip_stack_max_dev_deg <= 180, "rvip_stack_max_dev_deg must be in [0, 180]"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError(f"PreprocessCfg: {'; '.join(bad)} (got {self})")

    @property
    def size(self) -> int:
        """Side of the final grid in pixels."""
        return self.crop * self.upsample

    @property
    def out_pixel_mm(self) -> float:
        """Pixel size of the final grid (mm)."""
        return self.pixel_mm / self.upsample


# keys of caches / run folders written before splits.json (the split now comes from the cohort's file)
LEGACY_KEYS = ("split_seed", "split_fractions")


def drop_legacy_keys(settings: dict) -> dict:
    """``settings`` without the keys older caches recorded (``LEGACY_KEYS``), so their runs still load."""
    return {k: v for k, v in settings.items() if k not in LEGACY_KEYS}
