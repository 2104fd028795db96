"""The anatomical frame of a labelled slice: AHA segments placed by predicted RV insertion points.

Cohorts whose labels carry no RVIPs (EMIDEC) need a frame to name the walls their labels hit; an assumed display
orientation is wrong whenever the scanner's view was rotated. :class:`RvipFrame` runs the anatomy nets on the
image, takes their RVIPs and lays the AHA segments (``aha_segment_map``) over the LABELLED myocardium around its
labelled LV centre: the same RVIPs that orient the image in preprocessing, so report words and normalised image
agree. Slices whose RVIPs are implausible (missing, too close, subtending an angle outside the range) get no frame
and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lgeclip.anatomy.aha import aha_segment_map, septal_direction
from lgeclip.anatomy.geometry import lv_center


class RvipFrame:
    """AHA segment maps of labelled slices from a predictor's RVIPs (see module docstring)."""

    def __init__(self, predictor, min_distance_mm: float = 8.0, min_angle_deg: float = 20.0,
                 max_angle_deg: float = 178.0, source: str = "anatomy nets") -> None:
        self.predictor, self.source = predictor, source  # source: named in the cohort's summary
        self.min_distance_mm, self.min_angle_deg, self.max_angle_deg = min_distance_mm, min_angle_deg, max_angle_deg

    @classmethod
    def from_run_dirs(cls, seg_run: Path, landmarks_run: Path, device: str | None = None,
                      memo: bool = False) -> RvipFrame:
        """The frame of the nets in these run folders; ``memo``: the predictor keeps its results (its
        ``predictor`` can then preprocess the same slices without running the nets again)."""
        from lgeclip.anatomy.predictor import AnatomyPredictor

        return cls(AnatomyPredictor.from_run_dirs(seg_run, landmarks_run, device=device, memo=memo),
                   source=f"RVIPs of {Path(landmarks_run).name} (LV from {Path(seg_run).name})")

    def _problem(self, rvip: np.ndarray, center: tuple[float, float], spacing: np.ndarray) -> str:
        if not np.all(np.isfinite(rvip)):
            return "RVIPs missing"
        d = float(np.hypot(*((rvip[0] - rvip[1]) * spacing)))
        if d < self.min_distance_mm:
            return "RVIPs too close"
        try:
            _, _, arc = septal_direction(center, tuple(rvip[0]), tuple(rvip[1]))
        except ValueError:
            return "RVIPs unusable"
        if not self.min_angle_deg <= np.degrees(arc) <= self.max_angle_deg:
            return "RVIP angle out of range"
        return ""

    def __call__(self, items: Sequence[tuple[np.ndarray, Sequence[float], np.ndarray, np.ndarray, str]]
                 ) -> list[tuple[np.ndarray | None, str]]:
        """For (image, spacing (row, col), myocardium, blood_pool, level) items: (AHA map or None, reason)."""
        results = self.predictor.predict_batch([(img, sp) for img, sp, *_ in items],
                                               [f"slice {i}" for i in range(len(items))], errors="none")
        out = []
        for (_, sp, myo, blood, level), res in zip(items, results, strict=True):
            if res is None:
                out.append((None, "no LV found by the anatomy nets"))
                continue
            myo = np.asarray(myo) > 0
            center = lv_center(myo, blood)
            rvip = np.asarray(res.rvip, float) if res.has_rvip else np.full((2, 2), np.nan)
            why = self._problem(rvip, center, np.asarray(sp, float).reshape(-1)[[0, -1]])
            if why:
                out.append((None, why))
                continue
            out.append((aha_segment_map(myo, tuple(rvip[0]), tuple(rvip[1]), level, center=center), ""))
        return out
