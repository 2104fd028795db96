"""Text-supervised training (CLIP + CoCa caption loss) and the image-only baseline, on a preprocessed cache.

``train_clip(recipe, cache, out)`` resolves a typed ``ClipTrainCfg`` (``clip_config``) from a YAML recipe, builds
the task and hands it to the generic loop. A recipe that asks for ``vision_init: segmentation`` without a path
gets the segmentation run that produced the cache (``cache.json``), so the run folder records exactly which
encoder it started from. Scoring and patient aggregation live in ``scoring``, run-folder I/O in ``runs``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from lgeclip.config import to_dict
from lgeclip.data.clip import ClipPairs, caption_corpus, collate_pairs
from lgeclip.models import create_model
from lgeclip.models.losses import ClassifierLoss, CocaLoss, caption_ids_from_texts
from lgeclip.synth.templates import negation_twin
from lgeclip.train.clip_config import (  # noqa: F401  (re-exported: the public names of this module)
    RECIPE_DIR,
    ClipTrainCfg,
    EvalCfg,
    OptimCfg,
    load_train_config,
    resolve_recipe,
)
from lgeclip.train.loop import fit
from lgeclip.train.runs import (  # noqa: F401
    AGGREGATION_FILE,
    load_run_config,
    load_run_model,
    write_inference_info,
)
from lgeclip.train.scoring import (  # noqa: F401
    choose_aggregation,
    patient_table,
    score_slices,
    split_records,
    validation_metrics,
)
from lgeclip.train.task import Task, unwrap_model
from lgeclip.utils import atomic_write_json, get_logger


def clip_param_groups(model: nn.Module, optim: OptimCfg) -> list[dict]:
    """Optimiser groups of an ``LgeClip`` or ``ImageClassifier``: vision encoder, unfrozen text layers, new heads
    (projections, caption decoder, classifier head) and the log temperature (no weight decay), each with its
    ``optim`` learning rate (a group without one gets the loop's). Empty groups are left out."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups: dict[str, list] = {"vision": [], "text": [], "head": [], "logit_scale": []}
    for n, p in named:
        if n == "logit_scale":
            groups["logit_scale"].append(p)
        elif n.startswith("visual.encoder.") or n.startswith("encoder."):
            groups["vision"].append(p)
        elif n.startswith("text.encoder."):
            groups["text"].append(p)
        else:
            groups["head"].append(p)
    lrs = {"vision": optim.vision_lr, "text": optim.text_lr, "head": optim.head_lr,
           "logit_scale": optim.logit_scale_lr}
    out = []
    for name, params in groups.items():
        if not params:
            continue
        g: dict = {"params": params, "name": name}
        if lrs[name] is not None:
            g["lr"] = float(lrs[name])
        if name == "logit_scale":
            g["weight_decay"] = 0.0
        out.append(g)
    return out


class ClipTask(Task):
    """CLIP + CoCa on (slice, sentence) pairs, or the image-only classifier on report labels."""

    def __init__(self, cfg: ClipTrainCfg, cache: str | Path) -> None:
        self.cfg = cfg
        self.cache = Path(cache)
        self.name = cfg.name
        self.loss = (CocaLoss.from_cfg(cfg.model) if cfg.task == "clip"
                     else ClassifierLoss(cfg.classifier.pos_weight))

    def build_model(self) -> nn.Module:
        model = create_model(self.cfg.model if self.cfg.task == "clip" else self.cfg.classifier)
        report = getattr(model, "init_report", None)
        main = os.environ.get("RANK", "0") == "0"
        if report is not None and main:
            get_logger("lgeclip.train").info(report.summary())
        if self.cfg.task == "clip" and self.cfg.model.prompt_anchor_weight > 0:
            # text only: the threshold is fitted to the captions the training slices may draw (deterministic, so
            # every rank and a resumed run get the same one; a resumed run then loads it from the checkpoint)
            recs = split_records(self.cache, self.cfg.data.train_splits)
            fitted = model.fit_prompt_anchors(*caption_corpus(recs, self.cfg.data))
            if main:
                get_logger("lgeclip.train").info(f"prompt anchors: threshold fitted to the training captions {fitted}")
        return model

    def param_groups(self, model: nn.Module) -> list[dict]:
        return clip_param_groups(model, self.cfg.optim)

    def train_dataset(self) -> ClipPairs:
        recs = split_records(self.cache, self.cfg.data.train_splits)
        if self.cfg.task == "image_only":
            recs = [r for r in recs if r.label in ("positive", "negative")]
        if not recs:
            raise ValueError(f"{self.cache}: no training slices in splits {self.cfg.data.train_splits}")
        return ClipPairs(recs, self.cfg.data, train=True, seed=self.cfg.loop.seed,
                         require_caption=self.cfg.task == "clip")

    def val_dataset(self) -> ClipPairs | None:
        recs = split_records(self.cache, [self.cfg.data.val_split])
        return ClipPairs(recs, self.cfg.data, train=False, seed=self.cfg.loop.seed) if recs else None

    def collate(self, items: list) -> dict:
        return collate_pairs(items)

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        if self.cfg.task == "clip":
            twins = ([negation_twin(c) for c in batch["caption"]] if self.cfg.model.negation_negatives else None)
            levels = batch["level"] if self.cfg.model.prompt_anchor_weight > 0 else None
            out = model(batch["image"], batch["caption"], twins, levels)
            ids = caption_ids_from_texts(batch["caption"], device=batch["image"].device,
                                         grouping=self.cfg.model.caption_grouping)
            terms = self.loss(out, ids)
            terms["logit_scale"] = out["logit_scale"].detach()  # logged every epoch (train_logit_scale)
            return terms
        # image-only: a synthetic scar turns a report-negative slice into a positive example
        labels = torch.where(batch["synthetic"], torch.ones_like(batch["label"]), batch["label"])
        return self.loss(model(batch["image"]), labels)

    def validate(self, model: nn.Module, dataset: ClipPairs, device: torch.device) -> dict[str, float]:
        p = score_slices(model, dataset, self.cfg.task, device, prompts=self.cfg.eval.prompts)
        out = validation_metrics(dataset.records, p, self.cfg.eval)
        if self.cfg.task == "clip":
            out.update(prompt_diagnostics(unwrap_model(model), self.cfg.eval.prompts))
        return out

    def config_dict(self) -> dict:
        d = to_dict(self.cfg)
        d["cache"] = str(self.cache.resolve())
        return d


@torch.no_grad()
def prompt_diagnostics(model: nn.Module, prompts: str = "paper") -> dict[str, float]:
    """Cosine between the projected positive and negative prompt (mid level; sides of the ``prompts`` set) and the
    logit scale: the largest possible zero-shot logit gap is scale x |P+ - P-| = scale x sqrt(2 (1 - cosine)), so
    a cosine near 1 caps how far P(LGE) can move from 0.5."""
    from lgeclip.models.zeroshot import ZeroShotClassifier, no_autocast

    emb = ZeroShotClassifier(model, prompts=prompts).prompt_embeddings("mid").float()  # (2, p), fp32
    scale = float(model.get_logit_scale())
    with no_autocast():
        cos = float(emb[0] @ emb[1])
    return {"prompt_cosine": cos, "logit_scale": scale,
            "max_logit_gap": scale * math.sqrt(max(0.0, 2.0 * (1.0 - cos)))}


def _choose_aggregation(cfg: ClipTrainCfg, cache: Path, out: Path) -> dict | None:
    """For ``eval.aggregation: auto``: score the best model on the validation patients and write the chosen
    aggregation to ``out/aggregation.json`` (read back by ``load_run_config``)."""
    if cfg.eval.aggregation != "auto":
        return None
    _, model = load_run_model(out)
    recs = split_records(cache, [cfg.data.val_split])
    if not recs:
        raise ValueError(f"{cache}: eval.aggregation=auto needs validation patients (split {cfg.data.val_split!r})")
    ds = ClipPairs(recs, cfg.data, train=False, seed=cfg.loop.seed)
    choice = choose_aggregation(ds.records, score_slices(model, ds, cfg.task, "cpu", prompts=cfg.eval.prompts),
                                cfg.eval)
    atomic_write_json(out / AGGREGATION_FILE, choice)
    return choice


def train_clip(config: str | Path | None, cache: str | Path, out: str | Path, overrides: list[str] | None = None,
               resume: bool = False) -> dict:
    """Train the recipe ``config`` on ``cache`` into run folder ``out`` (torchrun-compatible); returns a summary."""
    cfg = load_train_config(config, overrides, cache)
    task = ClipTask(cfg, cache)
    main = os.environ.get("RANK", "0") == "0"
    if main:
        write_inference_info(cache, out)
    summary = fit(task, cfg.loop, out, resume=resume)
    if main:
        choice = _choose_aggregation(cfg, Path(cache), Path(out))
        if choice is not None:
            summary["aggregation"] = choice["aggregation"]
    return {**summary, "run": str(out), "recipe": cfg.name, "task": cfg.task}
