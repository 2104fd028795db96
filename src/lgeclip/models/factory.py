"""``create_model`` / ``list_models``: named architectures are data (config overrides), open_clip style."""

from __future__ import annotations

import dataclasses

from torch import nn

from lgeclip.models.classifier import ImageClassifier
from lgeclip.models.clip import LgeClip
from lgeclip.models.configs import ClassifierCfg, ClipModelCfg

# name -> (config class, field overrides of its defaults)
_ARCHITECTURES: dict[str, tuple[type, dict]] = {
    "lgeclip-densenet121-minilm": (ClipModelCfg, {}),  # CLIP + CoCa caption decoder (the default)
    "lgeclip-densenet121-minilm-clip": (ClipModelCfg, {"caption_weight": 0.0}),  # ablation: no caption loss
    "lgeclip-densenet121-minilm-cls": (ClipModelCfg, {"text_pooling": "cls"}),  # ablation: CLS pooling
    "densenet121-classifier": (ClassifierCfg, {}),  # image-only supervised baseline
}


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    return sorted(_ARCHITECTURES)


def model_config(name: str, **overrides) -> ClipModelCfg | ClassifierCfg:
    """Config of a named architecture with field overrides (validated)."""
    if name not in _ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}")
    cls, fields = _ARCHITECTURES[name]
    return cls(**{**fields, **overrides})


def create_model(cfg: ClipModelCfg | ClassifierCfg | str, init_weights: bool = True, **overrides) -> nn.Module:
    """Build ``LgeClip`` or ``ImageClassifier`` from a config (or an architecture name plus overrides).

    ``init_weights=False`` skips the vision init loader (when a trained state dict is loaded afterwards).
    """
    if isinstance(cfg, str):
        cfg = model_config(cfg, **overrides)
    elif overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    if isinstance(cfg, ClipModelCfg):
        return LgeClip(cfg, init_weights=init_weights)
    if isinstance(cfg, ClassifierCfg):
        return ImageClassifier(cfg, init_weights=init_weights)
    raise TypeError(f"create_model needs a ClipModelCfg, ClassifierCfg or model name, got {type(cfg).__name__}")
