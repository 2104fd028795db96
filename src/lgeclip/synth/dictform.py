"""Functional dict form of the synthetic scar (explicit generator): image, scar mask and text together."""

from __future__ import annotations

from typing import Any

import numpy as np

from lgeclip.synth.config import SynthScarCfg
from lgeclip.synth.scar import blend, draw_scar_params, render_scar_weight


def is_report_negative(label: Any) -> bool:
    """True when the patient's report says no LGE: label 0 or "negative" (positives and unknown are not)."""
    if isinstance(label, bool):
        return False
    if isinstance(label, str):
        return label == "negative"
    try:
        return int(label) == 0 and float(label) == 0.0
    except (TypeError, ValueError):
        return False


def _inputs(data: dict) -> tuple:
    image = np.asarray(data["image"])
    lead = image.shape[:-2]
    if any(s != 1 for s in lead):
        raise ValueError(f"synthetic scar: image must be (H, W) or (1, H, W), got {image.shape} "
                         f"(slice {data.get('slice_id', '?')})")
    two_d = lambda k: np.asarray(data[k]).reshape(image.shape[-2:])  # noqa: E731
    return image, two_d("myocardium"), two_d("aha"), two_d("layers"), two_d("thickness")


def draw_for_dict(data: dict, rng: np.random.Generator, cfg: SynthScarCfg) -> tuple[bool, dict | None, Any]:
    """``(do, params, region)``: the apply-or-not draw (lambda = ``cfg.prob``, always drawn first), then, for a
    report-negative slice that is to be changed, the scar parameters (``draw_scar_params``)."""
    do = bool(rng.random() < cfg.prob)
    if not (do and is_report_negative(data.get("label"))):
        return do, None, None
    _, myo, aha, layers, thickness = _inputs(data)
    params, region = draw_scar_params(myo, aha, layers, thickness, str(data["level"]), rng, cfg,
                                      float(data.get("pixel_mm", 1.0)))
    return do, params, region


def apply_to_dict(data: dict, params: dict | None, region: np.ndarray | None, cfg: SynthScarCfg) -> dict:
    """Apply drawn parameters: a new dict with image replaced, ``scar_weight`` (same shape as the image),
    ``caption`` (the sentence, ending with the level suffix), ``synthetic`` True. Unchanged slices (not drawn,
    positive / unknown report, or skipped) come back as the same arrays with ``synthetic`` False."""
    out = dict(data)
    if params is None or region is None or not params.get("applied"):
        out.setdefault("synthetic", False)
        return out
    image = np.asarray(data["image"])
    weight = render_scar_weight(region, params, cfg)
    scarred = blend(image.reshape(region.shape), weight, params["gamma"]).reshape(image.shape)
    if _is_tensor(data["image"]):
        import torch

        scarred = torch.as_tensor(scarred, dtype=data["image"].dtype, device=data["image"].device)
    out.update(image=scarred, scar_weight=weight.reshape(image.shape), caption=params["sentence"], synthetic=True)
    return out


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def synthetic_scar_dict(data: dict, rng: np.random.Generator,
                        cfg: SynthScarCfg | None = None) -> tuple[dict, dict | None]:
    """Functional form with an explicit generator: ``(new dict, params or None)``; see ``RandSyntheticScar``."""
    cfg = cfg or SynthScarCfg()
    _, params, region = draw_for_dict(data, rng, cfg)
    return apply_to_dict(data, params, region, cfg), params
