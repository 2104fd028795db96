"""Initialise the DenseNet121 encoder from a segmentation run or an ImageNet weights file, with a load report.

Every loader counts what it copied and what it could not use, and raises when fewer than
``min_loaded_fraction`` of the encoder's tensors loaded (MONAI's own loader skips mismatches silently).
``num_batches_tracked`` counters are not counted as expected tensors (torchvision files lack them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lgeclip.utils import get_logger, load_tensors

# torchvision dense layer keys ``denselayerN.norm1.weight`` (or the old ``norm.1.weight``) -> MONAI ``layers.norm1``
_TV_DENSE = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(weight|bias|running_mean|running_var"
                       r"|num_batches_tracked)$")


class VisionInitError(RuntimeError):
    """An init weights file did not fit the encoder (most tensors skipped) or is missing."""


@dataclass
class LoadReport:
    """What a vision init loader did."""

    source: str  # segmentation | imagenet | random
    path: str | None = None  # the file actually read
    loaded: int = 0  # encoder tensors copied from the file
    expected: int = 0  # encoder tensors (without num_batches_tracked counters)
    skipped: list[str] = field(default_factory=list)  # file keys not used (unknown name or wrong shape)
    missing: list[str] = field(default_factory=list)  # encoder keys the file did not provide (counters excluded)

    @property
    def fraction(self) -> float:
        return self.loaded / self.expected if self.expected else 0.0

    def summary(self) -> str:
        if self.source == "random":
            return "vision encoder: random initialisation"
        head = ", ".join(self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
        return (f"vision encoder from {self.source} weights {self.path}: loaded {self.loaded}/{self.expected} "
                f"tensors, skipped {len(self.skipped)} file tensors [{head}], missing {len(self.missing)}")

    def to_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "loaded": self.loaded, "expected": self.expected,
                "skipped": list(self.skipped), "missing": list(self.missing)}


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_encoder_state(encoder: nn.Module, state: dict[str, torch.Tensor], source: str, path: str | None,
                       min_loaded_fraction: float = 0.5) -> LoadReport:
    """Copy every tensor of ``state`` whose name and shape match ``encoder``; report and check the counts.

    A first-conv weight with 3 input channels is summed over RGB for a 1-channel encoder (a grey image fed as
    R = G = B gives the same response).
    """
    own = encoder.state_dict()
    use: dict[str, torch.Tensor] = {}
    report = LoadReport(source=source, path=path, expected=sum(not _is_counter(k) for k in own))
    for key, value in state.items():
        target = own.get(key)
        if target is not None and target.ndim == 4 and value.ndim == 4 and value.shape[1] == 3 \
                and target.shape[1] == 1 and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
            value = value.sum(dim=1, keepdim=True)  # (O, 3, k, k) -> (O, 1, k, k)
        if target is None or target.shape != value.shape:
            report.skipped.append(key)
            continue
        use[key] = value.to(dtype=target.dtype)
    encoder.load_state_dict(use, strict=False)
    report.loaded = sum(not _is_counter(k) for k in use)
    report.missing = [k for k in own if k not in use and not _is_counter(k)]
    if report.fraction < min_loaded_fraction:
        raise VisionInitError(f"{report.summary()}: fewer than {min_loaded_fraction:.0%} of the encoder tensors "
                              "loaded; is this a DenseNet121 file of the expected layout?")
    return report


def torchvision_to_monai_densenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision DenseNet121 state dict (``features.denseblock1.denselayer1.norm1.weight``) to the
    layout of MONAI's ``DenseNet121.features`` (``denseblock1.denselayer1.layers.norm1.weight``).

    Keys outside ``features.`` (e.g. ``classifier.*``) are kept unchanged so they show up as skipped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("features."):
            key = key[len("features."):]
            m = _TV_DENSE.match(key)
            if m:
                key = f"{m.group(1)}.layers.{m.group(2)}{m.group(3)}.{m.group(4)}"
        out[key] = value
    return out


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _normalise_encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept bare ``.features`` keys (``conv0.weight``) or the same keys prefixed ``features.``."""
    if "conv0.weight" not in state and "features.conv0.weight" in state:
        return _strip_prefix(state, "features.")
    return state


def segmentation_encoder_state(seg_run: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Encoder tensors of a segmentation run: ``encoder.safetensors``, else ``encoder.*`` keys of
    ``model.safetensors``. ``seg_run`` may also name one of those files directly."""
    seg_run = Path(seg_run)
    if seg_run.is_file():
        files = [seg_run]
    elif seg_run.is_dir():
        files = [f for f in (seg_run / "encoder.safetensors", seg_run / "model.safetensors") if f.is_file()]
    else:
        raise VisionInitError(f"segmentation init: {seg_run} does not exist")
    if not files:
        raise VisionInitError(f"segmentation init: {seg_run} holds neither encoder.safetensors nor model.safetensors")
    path = files[0]
    state = load_tensors(path)
    if any(k.startswith("encoder.") for k in state):  # a whole segmentation net: take its encoder
        state = _strip_prefix(state, "encoder.")
    return _normalise_encoder_keys(state), path


def load_vision_init(encoder: nn.Module, cfg) -> LoadReport:
    """Initialise ``encoder`` (a DenseNet121 ``.features``) as ``cfg.vision_init`` says; log and return a report.

    ``cfg`` is a ``ClipModelCfg`` or ``ClassifierCfg`` (fields ``vision_init``, ``vision_init_path``,
    ``min_loaded_fraction``). Raises ``VisionInitError`` on a missing file or when most tensors were skipped.
    """
    log = get_logger()
    if cfg.vision_init == "random":
        report = LoadReport(source="random")
    elif cfg.vision_init == "segmentation":
        state, path = segmentation_encoder_state(cfg.vision_init_path)
        report = load_encoder_state(encoder, state, "segmentation", str(path), cfg.min_loaded_fraction)
    elif cfg.vision_init == "imagenet":
        path = Path(cfg.vision_init_path)
        if not path.is_file():
            raise VisionInitError(f"imagenet init: weights file {path} does not exist")
        state = torchvision_to_monai_densenet(load_tensors(path))
        report = load_encoder_state(encoder, state, "imagenet", str(path), cfg.min_loaded_fraction)
    else:
        raise ValueError(f"unknown vision_init {cfg.vision_init!r}")
    log.info(report.summary())
    return report
