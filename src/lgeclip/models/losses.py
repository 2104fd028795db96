"""Losses (tensors in, named terms out): multi-positive CLIP loss, caption loss, CoCa sum, classifier BCE.

Multi-positive CLIP loss. With L2-normalised image features I (B, p), text features T (B, p), temperature
scale s and caption ids c (B,), the logits are ``Z = s * I @ T.T`` and the target distribution is

    Y[i, j] = [c_i == c_j] / n_i,    n_i = #{k : c_k == c_i}

(uniform over every entry whose caption is the same string; Y is symmetric). Then

    loss_i2t = -(1/B) * sum_i sum_j Y[i, j] * log_softmax_j(Z[i, :])
    loss_t2i = -(1/B) * sum_j sum_i Y[j, i] * log_softmax_i(Z[:, j])
    contrastive_loss = (loss_i2t + loss_t2i) / 2

With all ids distinct, Y is the identity and this is the usual symmetric CLIP cross-entropy.
Soft targets (``soft_weight`` w > 0, reference text features R (B, H), temperature tau):

    Y_soft[i, j] = softmax_j(R_i . R_j / tau),    Y <- (1 - w) * Y + w * Y_soft

(R_i . R_j is symmetric, so Y stays symmetric); paraphrases share target mass instead of being pure negatives.
The loss is computed on the local batch (no cross-rank feature gathering under DDP).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lgeclip.synth.templates import split_level_suffix


def caption_key(text: str, grouping: str = "exact") -> str:
    """The identity of a caption in the CLIP targets: the string itself ("exact"), or ("sentence") its sentence
    without the level suffix, lower-cased, with runs of non-alphanumerics folded to one space."""
    if grouping == "exact":
        return text
    if grouping != "sentence":
        raise ValueError(f"unknown caption grouping {grouping!r}; use exact or sentence")
    return re.sub(r"[^a-z0-9%<>]+", " ", split_level_suffix(text)[0].lower()).strip()


def caption_ids_from_texts(texts: Sequence[str], device=None, grouping: str = "exact") -> torch.Tensor:
    """Integer id per caption, equal for captions with the same ``caption_key`` (first-seen order):
    ["a", "b", "a"] -> [0, 1, 0]."""
    index: dict[str, int] = {}
    keys = [caption_key(t, grouping) for t in texts]
    return torch.tensor([index.setdefault(k, len(index)) for k in keys], dtype=torch.long, device=device)


def multi_positive_targets(caption_ids: torch.Tensor) -> torch.Tensor:
    """Y (B, B): row i uniform over the entries j with ``caption_ids[j] == caption_ids[i]``."""
    same = (caption_ids[:, None] == caption_ids[None, :]).float()  # (B, B)
    return same / same.sum(dim=1, keepdim=True)


def soft_targets(reference: torch.Tensor, temperature: float) -> torch.Tensor:
    """Y_soft (B, B): row i = softmax_j(R_i . R_j / temperature) of normalised reference text features R (B, H)."""
    sim = reference.float() @ reference.float().t()  # (B, B)
    return torch.softmax(sim / temperature, dim=1)


def clip_targets(caption_ids: torch.Tensor, reference: torch.Tensor | None = None, soft_weight: float = 0.0,
                 temperature: float = 0.05) -> torch.Tensor:
    """Y (B, B): multi-positive targets, mixed with ``soft_targets`` when ``soft_weight > 0``."""
    y = multi_positive_targets(caption_ids)  # (B, B)
    if soft_weight > 0:
        if reference is None:
            raise ValueError("soft_weight > 0 needs reference text features")
        y = (1 - soft_weight) * y + soft_weight * soft_targets(reference.to(y.device), temperature)
    return y


def clip_loss_from_logits(logits: torch.Tensor, caption_ids: torch.Tensor | None = None,
                          reference: torch.Tensor | None = None, soft_weight: float = 0.0,
                          temperature: float = 0.05) -> torch.Tensor:
    """Symmetric multi-positive CLIP loss of image->text logits Z (B, B) (see the module docstring)."""
    b = logits.shape[0]
    if logits.shape != (b, b):
        raise ValueError(f"logits must be square (B, B), got {tuple(logits.shape)}")
    if caption_ids is None and soft_weight == 0:
        target = torch.arange(b, device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    ids = torch.arange(b, device=logits.device) if caption_ids is None else caption_ids.to(logits.device)
    y = clip_targets(ids, reference, soft_weight, temperature).to(logits.dtype)  # (B, B)
    # soft rows are not exactly symmetric after the per-row softmax: the text->image half uses Y's columns
    return (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y.t() / y.t().sum(1, keepdim=True))) / 2


def hard_negative_i2t_loss(logits: torch.Tensor, hard_logits: torch.Tensor, rows: torch.Tensor,
                           caption_ids: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
    """Image -> text loss with one extra column per hard negative, visible only to its own image's row.

    logits (B, B) image->text; hard_logits (B, H) images x hard-negative texts; rows (H,) the image each hard
    negative belongs to. Row i's softmax runs over the B captions plus the hard negatives of image i (NegCLIP's
    idea: the caption's negation must score below the caption). ``y`` (B, B): targets (default: multi-positive)."""
    b = logits.shape[0]
    own = rows[None, :] == torch.arange(b, device=logits.device)[:, None]  # (B, H)
    extra = hard_logits.masked_fill(~own, -1e9)  # finite: soft-target cross-entropy multiplies 0 by it
    full = torch.cat([logits, extra], dim=1)  # (B, B + H)
    ids = torch.arange(b, device=logits.device) if caption_ids is None else caption_ids.to(logits.device)
    y = (multi_positive_targets(ids) if y is None else y).to(logits.dtype)  # (B, B)
    y = torch.cat([y, y.new_zeros((b, extra.shape[1]))], dim=1)  # (B, B + H)
    return F.cross_entropy(full, y)


def prompt_anchor_loss(anchor_logits: torch.Tensor, anchor_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the image-vs-prompt-pair logits (B, 2) against the text-derived targets (B, 2)."""
    if anchor_logits.shape != anchor_targets.shape or anchor_logits.shape[-1] != 2:
        raise ValueError(f"anchor logits {tuple(anchor_logits.shape)} and targets {tuple(anchor_targets.shape)} "
                         "must both be (B, 2)")
    return F.cross_entropy(anchor_logits.float(), anchor_targets.float())


class ClipLoss(nn.Module):
    """Multi-positive symmetric CLIP loss; identical captions (same ``caption_ids``) count as positives.

    With ``hard_negative_features`` (H, p) and ``hard_negative_rows`` (H,) the image->text half also contrasts
    each image with its own hard negatives (``hard_negative_i2t_loss``); text->image is unchanged.
    ``soft_weight`` > 0 mixes in soft targets from ``text_reference`` (see the module docstring)."""

    def __init__(self, soft_weight: float = 0.0, soft_temperature: float = 0.05) -> None:
        super().__init__()
        self.soft_weight, self.soft_temperature = float(soft_weight), float(soft_temperature)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                caption_ids: torch.Tensor | None = None, hard_negative_features: torch.Tensor | None = None,
                hard_negative_rows: torch.Tensor | None = None,
                text_reference: torch.Tensor | None = None) -> torch.Tensor:
        # image_features, text_features: (B, p) L2-normalised; logit_scale: () scale s = exp(t), already clamped
        # text_reference: (B, H) normalised frozen-layer text features (soft targets only)
        logits = logit_scale * image_features.float() @ text_features.float().t()  # (B, B) image -> text
        soft = (text_reference, self.soft_weight, self.soft_temperature)
        if hard_negative_features is None or hard_negative_features.shape[0] == 0:
            return clip_loss_from_logits(logits, caption_ids, *soft)
        hard = logit_scale * image_features.float() @ hard_negative_features.float().t()  # (B, H)
        ids = torch.arange(logits.shape[0], device=logits.device) if caption_ids is None else caption_ids
        y = clip_targets(ids.to(logits.device), *soft).to(logits.dtype)  # (B, B)
        i2t = hard_negative_i2t_loss(logits, hard, hard_negative_rows, ids, y)
        t2i = F.cross_entropy(logits.t(), y.t() / y.t().sum(1, keepdim=True))
        return (i2t + t2i) / 2


class CaptionLoss(nn.Module):
    """Next-token cross-entropy over the vocabulary, ignoring padding labels (``ignore_index``)."""

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, caption_logits: torch.Tensor, caption_labels: torch.Tensor) -> torch.Tensor:
        # caption_logits: (B, T, V); caption_labels: (B, T) with ignore_index at padding
        return F.cross_entropy(caption_logits.float().flatten(0, 1), caption_labels.flatten(),
                               ignore_index=self.ignore_index)


class CocaLoss(nn.Module):
    """``contrastive_weight * ClipLoss + caption_weight * CaptionLoss`` on an ``LgeClip.forward`` output."""

    def __init__(self, contrastive_weight: float = 1.0, caption_weight: float = 1.0, ignore_index: int = -100,
                 soft_weight: float = 0.0, soft_temperature: float = 0.05, anchor_weight: float = 0.0) -> None:
        super().__init__()
        self.contrastive_weight, self.caption_weight = float(contrastive_weight), float(caption_weight)
        self.anchor_weight = float(anchor_weight)
        self.clip = ClipLoss(soft_weight, soft_temperature)
        self.caption = CaptionLoss(ignore_index)

    @classmethod
    def from_cfg(cls, cfg) -> CocaLoss:
        """From a ``ClipModelCfg`` (fields ``contrastive_weight``, ``caption_weight``)."""
        return cls(cfg.contrastive_weight, cfg.caption_weight, soft_weight=cfg.soft_target_weight,
                   soft_temperature=cfg.soft_target_temperature, anchor_weight=cfg.prompt_anchor_weight)

    def forward(self, out: dict, caption_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``out`` is the dict of ``LgeClip.forward``; returns contrastive_loss, caption_loss, loss (and
        anchor_loss when ``anchor_weight > 0``: cross-entropy of ``anchor_logits`` against ``anchor_targets``)."""
        contrastive = self.clip(out["image_features"], out["text_features"], out["logit_scale"], caption_ids,
                                out.get("hard_negative_features"), out.get("hard_negative_rows"),
                                out.get("text_reference"))
        if self.caption_weight > 0:
            if out.get("caption_logits") is None:
                raise ValueError("caption_weight > 0 but the model returned no caption_logits (built without decoder)")
            caption = self.caption(out["caption_logits"], out["caption_labels"])
        else:
            caption = contrastive.new_zeros(())
        loss = self.contrastive_weight * contrastive + self.caption_weight * caption
        terms = {"contrastive_loss": contrastive, "caption_loss": caption}
        if self.anchor_weight > 0:
            if out.get("anchor_logits") is None:
                raise ValueError("anchor_weight > 0 but the model returned no anchor_logits (pass the slice levels)")
            anchor = prompt_anchor_loss(out["anchor_logits"], out["anchor_targets"])
            loss = loss + self.anchor_weight * anchor
            terms["anchor_loss"] = anchor
        return {**terms, "loss": loss}


class ClassifierLoss(nn.Module):
    """Binary cross-entropy with logits for ``ImageClassifier``; labels 1 (scar) / 0, entries < 0 ignored."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, out: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        # out["logits"]: (B,); labels: (B,) in {1, 0, -1 unknown}
        logits = out["logits"].float()
        keep = labels >= 0
        if not bool(keep.any()):
            raise ValueError("ClassifierLoss: every label in the batch is unknown (-1)")
        pw = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        bce = F.binary_cross_entropy_with_logits(logits[keep], labels[keep].float(), pos_weight=pw)
        return {"bce_loss": bce, "loss": bce}
