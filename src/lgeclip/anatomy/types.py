"""Anatomy results: what an anatomy predictor (nets or truth) returns for one slice, on the slice's native grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lgeclip.anatomy.geometry import lv_center as _lv_center


def _point(p, name: str) -> tuple[float, float]:
    a = np.asarray(p, dtype=float).reshape(-1)
    if a.shape != (2,):
        raise ValueError(f"{name}: expected a (row, col) point, got {p!r}")
    return float(a[0]), float(a[1])


@dataclass
class AnatomyResult:
    """LV anatomy of one slice on the native pixel grid of its image.

    ``myocardium`` / ``blood_pool``: uint8 (H, W) 0/1; points are (row, col) floats in native pixels. A missing
    point is NaN (``has_rvip`` is then False). ``lv_center`` defaults to the blood-pool centroid. ``rv``: the RV
    cavity (uint8 (H, W)) when the segmentation net predicts it, else None."""

    myocardium: np.ndarray
    blood_pool: np.ndarray
    anterior_rvip: tuple[float, float]
    inferior_rvip: tuple[float, float]
    lv_center: tuple[float, float] | None = None
    rv: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.myocardium = (np.asarray(self.myocardium) > 0).astype(np.uint8)
        self.blood_pool = (np.asarray(self.blood_pool) > 0).astype(np.uint8)
        if self.myocardium.ndim != 2 or self.myocardium.shape != self.blood_pool.shape:
            raise ValueError(f"myocardium {self.myocardium.shape} / blood_pool {self.blood_pool.shape}: "
                             "expected two (H, W) masks of the same shape")
        if self.rv is not None:
            self.rv = (np.asarray(self.rv) > 0).astype(np.uint8)
            if self.rv.shape != self.myocardium.shape:
                raise ValueError(f"rv {self.rv.shape}: expected the shape of the myocardium {self.myocardium.shape}")
        self.anterior_rvip = _point(self.anterior_rvip, "anterior_rvip")
        self.inferior_rvip = _point(self.inferior_rvip, "inferior_rvip")
        if self.lv_center is None:
            if self.myocardium.any() or self.blood_pool.any():
                self.lv_center = _lv_center(self.myocardium, self.blood_pool)
            else:
                self.lv_center = (float("nan"), float("nan"))
        self.lv_center = _point(self.lv_center, "lv_center")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.myocardium.shape)

    @property
    def has_rvip(self) -> bool:
        return bool(np.all(np.isfinite(self.anterior_rvip + self.inferior_rvip)))

    @property
    def rvip(self) -> np.ndarray:
        """(2, 2) float32 [[ant_row, ant_col], [inf_row, inf_col]]."""
        return np.array([self.anterior_rvip, self.inferior_rvip], dtype=np.float32)


class OracleAnatomy:
    """Anatomy from the truth stored in a cohort slice npz (tests, ablations, cache building with ``oracle``)."""

    @staticmethod
    def from_slice(arrays: dict, slice_id: str = "slice", allow_missing_rvip: bool = False) -> AnatomyResult:
        """AnatomyResult from truth arrays ``myocardium``, ``blood_pool``, ``rvip`` (2, 2) of a slice npz.

        Raises ValueError naming ``slice_id`` when a truth array is absent or the RVIPs are NaN; with
        ``allow_missing_rvip`` (a cohort labelled without RV, e.g. EMIDEC, preprocessed with ``rvip_fallback``)
        absent or NaN RVIPs become missing points instead."""
        needed = ("myocardium", "blood_pool") if allow_missing_rvip else ("myocardium", "blood_pool", "rvip")
        missing = [k for k in needed if k not in arrays]
        if missing:
            raise ValueError(f"{slice_id}: no truth {', '.join(missing)} in the slice arrays (oracle anatomy)")
        rvip = np.asarray(arrays.get("rvip", np.full((2, 2), np.nan)), dtype=float)
        if allow_missing_rvip and (rvip.shape != (2, 2) or not np.all(np.isfinite(rvip))):
            nan = (float("nan"), float("nan"))
            return AnatomyResult(arrays["myocardium"], arrays["blood_pool"], nan, nan)
        if rvip.shape != (2, 2) or not np.all(np.isfinite(rvip)):
            raise ValueError(f"{slice_id}: truth rvip is unknown (NaN) or malformed {rvip.tolist()}")
        return AnatomyResult(arrays["myocardium"], arrays["blood_pool"], tuple(rvip[0]), tuple(rvip[1]))
