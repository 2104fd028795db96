"""lgeclip.anatomy layer (see docs/ARCHITECTURE.md): pure geometry, AHA segments, orientation, anatomy results.

Kept light (numpy / scipy only): the nets live in ``lgeclip.anatomy.nets`` / ``lgeclip.anatomy.predictor``
and are imported from there explicitly.
"""

from lgeclip.anatomy.aha import WALL_WORDS, aha_segment_map, aha_segments
from lgeclip.anatomy.geometry import lv_center, myocardium_area_mm2, transmural_depth, wall_layers, wall_thickness
from lgeclip.anatomy.orient import OrientTransform, normalise_orientation, orient_transform
from lgeclip.anatomy.types import AnatomyResult, OracleAnatomy

__all__ = [
    "WALL_WORDS", "AnatomyResult", "OracleAnatomy", "OrientTransform", "aha_segment_map", "aha_segments",
    "lv_center", "myocardium_area_mm2", "normalise_orientation", "orient_transform", "transmural_depth",
    "wall_layers", "wall_thickness",
]
