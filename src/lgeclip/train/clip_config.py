"""Typed config of one text-supervised (or image-only) training recipe, and recipe lookup.

A recipe is YAML overrides of ``configs/train/base.yaml`` (the commented reference of every field here);
``load_train_config`` resolves one (plus ``--set a.b=value`` overrides) into a validated ``ClipTrainCfg``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lgeclip.config import apply_overrides, from_dict, read_recipe
from lgeclip.data.clip import DataCfg
from lgeclip.metrics import AGGREGATIONS
from lgeclip.models import ClassifierCfg, ClipModelCfg
from lgeclip.train.loop import LoopCfg
from lgeclip.utils import config_dir


@dataclass
class EvalCfg:
    """How slice scores become patient calls (validation, evaluation and ``predict``).

    The slice rule is the paper's (positive vs negative prompt, or the classifier's sigmoid, at a fixed 0.5);
    only the slice -> patient aggregation is a choice, and ``auto`` makes it on validation patients: after
    training, the best of ``candidates`` by validation score is written to the run's ``aggregation.json``."""

    aggregation: str = "max"  # max | mean | top2 | noisy_or | auto (chosen on validation patients)
    candidates: list[str] = field(default_factory=lambda: ["max", "top2", "mean"])  # what ``auto`` chooses from
    threshold: float = 0.5  # fixed, never fitted on data
    # zero-shot prompts (lgeclip.models.zeroshot.PROMPT_SETS): "paper" = the paper's one pair | "ensemble" = the
    # normalised mean over synonym templates (the paper's pair among them)
    prompts: str = "paper"

    def __post_init__(self) -> None:
        for how in [*self.candidates, *([] if self.aggregation == "auto" else [self.aggregation])]:
            if how not in AGGREGATIONS:
                raise ValueError(f"eval aggregation {how!r} unknown; use one of {AGGREGATIONS} (or auto)")
        if self.aggregation == "auto" and not self.candidates:
            raise ValueError("eval.aggregation=auto needs at least one candidate")
        if self.prompts not in ("paper", "ensemble"):
            raise ValueError(f"eval.prompts must be paper|ensemble, got {self.prompts!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")


@dataclass
class OptimCfg:
    """Learning rate per parameter group (null = ``loop.lr``). The groups differ in what they start from: the
    segmentation-initialised vision encoder, the pretrained text layers, freshly initialised heads (projections,
    caption decoder, classifier head) and the log temperature, which with one shared small LR cannot move."""

    vision_lr: float | None = None
    text_lr: float | None = None
    head_lr: float | None = None
    logit_scale_lr: float | None = None  # never weight-decayed

    def __post_init__(self) -> None:
        for name in ("vision_lr", "text_lr", "head_lr", "logit_scale_lr"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"optim.{name} must be > 0 or null, got {v!r}")


@dataclass
class ClipTrainCfg:
    """One training recipe: task kind, data, model (CLIP or classifier), optimiser groups and loop settings."""

    task: Literal["clip", "image_only"] = "clip"
    name: str = "proposed"  # recipe name, written to run.json and tables
    data: DataCfg = field(default_factory=DataCfg)
    model: ClipModelCfg = field(default_factory=ClipModelCfg)
    classifier: ClassifierCfg = field(default_factory=ClassifierCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    loop: LoopCfg = field(default_factory=LoopCfg)

    def __post_init__(self) -> None:
        if self.task not in ("clip", "image_only"):
            raise ValueError(f"task must be clip or image_only, got {self.task!r}")
        if (self.task == "clip" and self.model.prompt_anchor_weight > 0
                and self.model.prompt_anchor_prompts != self.eval.prompts):
            raise ValueError(f"model.prompt_anchor_prompts={self.model.prompt_anchor_prompts!r} must equal "
                             f"eval.prompts={self.eval.prompts!r}: the anchors train the rule inference applies")


RECIPE_DIR = config_dir("train")


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe path, or a bare name looked up in ``configs/train/<name>.yaml``."""
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = RECIPE_DIR / f"{recipe}.yaml"
    if cand.exists():
        return cand
    raise FileNotFoundError(f"recipe {recipe!r} not found (looked at {p} and {cand})")


def load_train_config(recipe: str | Path | None, overrides: list[str] | None = None,
                      cache: str | Path | None = None) -> ClipTrainCfg:
    """Resolve a recipe (+ dotted overrides) into a validated ``ClipTrainCfg``; fills the seg-init path from
    the cache's ``cache.json`` when the recipe asks for ``vision_init: segmentation`` without a path."""
    data = read_recipe(resolve_recipe(recipe)) if recipe else {}
    data = apply_overrides(data, overrides)
    if cache is not None:
        meta_path = Path(cache) / "cache.json"
        seg_run = json.loads(meta_path.read_text()).get("seg_run") if meta_path.exists() else None
        for section in ("model", "classifier"):
            sec = data.setdefault(section, {})
            if sec.get("vision_init") == "segmentation" and not sec.get("vision_init_path"):
                if not seg_run:
                    raise ValueError(f"{section}.vision_init=segmentation needs vision_init_path, and {cache} "
                                     f"records no seg_run (oracle-built cache?): pass {section}.vision_init_path="
                                     f"<seg run> or {section}.vision_init=random")
                sec["vision_init_path"] = str(seg_run)
    return from_dict(ClipTrainCfg, data)
