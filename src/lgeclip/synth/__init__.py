"""lgeclip.synth layer (see docs/ARCHITECTURE.md §7): synthetic scar image-text augmentation.

``synthesize_scar`` (pure function with an explicit generator) -> ``synthetic_scar_dict`` (dict form, explicit
generator, for the data layer) -> ``RandSyntheticScar`` (MONAI-style random transform owning ``self.R``; imported
lazily because importing MONAI's transforms takes seconds).
"""

from typing import Any

from lgeclip.synth.config import EXTENT_LAYERS, SynthScarCfg
from lgeclip.synth.dictform import is_report_negative, synthetic_scar_dict
from lgeclip.synth.scar import blend, draw_scar_params, render_scar_weight, scar_region, synthesize_scar
from lgeclip.synth.templates import ENHANCEMENT_WORDS, TEMPLATES, level_suffix

__all__ = [
    "ENHANCEMENT_WORDS", "EXTENT_LAYERS", "TEMPLATES", "RandSyntheticScar", "SynthScarCfg", "blend",
    "draw_scar_params", "is_report_negative", "level_suffix", "render_scar_weight", "scar_region",
    "synthesize_scar", "synthetic_scar_dict",
]


def __getattr__(name: str) -> Any:
    if name == "RandSyntheticScar":
        from lgeclip.synth.transform import RandSyntheticScar

        return RandSyntheticScar
    raise AttributeError(f"module 'lgeclip.synth' has no attribute {name!r}")
