"""Zero-shot LGE detection: softmax over the similarities to a positive and a negative prompt.

The prompt embeddings depend only on the model and the slice level, so they are computed once per model and
level and cached (the frozen text encoder is the slow part on CPU).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from lgeclip.synth.templates import level_suffix

POSITIVE_PROMPT = "there is hyperenhancement in the myocardium."
NEGATIVE_PROMPT = "there is no hyperenhancement in the myocardium."


def no_autocast() -> contextlib.ExitStack:
    """A context with autocast off on the CPU (and on CUDA when present): fp32 inside a bf16 training step."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast("cpu", enabled=False))
    if torch.cuda.is_available():
        stack.enter_context(torch.autocast("cuda", enabled=False))
    return stack


def prompts_for_level(level: str, positive: str = POSITIVE_PROMPT, negative: str = NEGATIVE_PROMPT) -> list[str]:
    """[positive, negative] prompt, each with the slice-level suffix used in training."""
    return [f"{positive} {level_suffix(level)}", f"{negative} {level_suffix(level)}"]


class ZeroShotClassifier:
    """P(LGE) per slice from a CLIP model; prompt embeddings cached per level (encode_text runs once per level)."""

    def __init__(self, model: nn.Module, positive: str = POSITIVE_PROMPT, negative: str = NEGATIVE_PROMPT) -> None:
        self.model = model
        self.positive = positive
        self.negative = negative
        self._prompt_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def prompt_embeddings(self, level: str) -> torch.Tensor:
        """(2, p) normalised embeddings of [positive, negative] prompts for ``level``."""
        if level not in self._prompt_cache:
            # fp32 even inside a bf16 autocast: the two prompts differ by one word, bf16 would blur that difference
            with no_autocast():
                emb = self.model.encode_text(prompts_for_level(level, self.positive, self.negative), normalize=True)
            self._prompt_cache[level] = emb.float()
        return self._prompt_cache[level]

    @torch.no_grad()
    def probs_from_features(self, image_features: torch.Tensor, levels: list[str]) -> torch.Tensor:
        """(B, p) normalised image embeddings + B levels -> (B,) P(LGE)."""
        if len(levels) != image_features.shape[0]:
            raise ValueError(f"{image_features.shape[0]} image features but {len(levels)} levels")
        feats = image_features.float()
        out = torch.empty(len(levels), device=feats.device)
        with torch.autocast(device_type=feats.device.type, enabled=False):  # fp32 even inside bf16 autocast
            scale = self.model.get_logit_scale().float()
            for level in sorted(set(levels)):
                idx = torch.tensor([i for i, lv in enumerate(levels) if lv == level], device=feats.device)
                sims = feats[idx] @ self.prompt_embeddings(level).to(feats.device).float().T  # (b, 2)
                out[idx] = torch.softmax(scale * sims, dim=-1)[:, 0]
        return out

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, levels: list[str]) -> torch.Tensor:
        """(B, 1, S, S) images in [0, 1] + B levels -> (B,) P(LGE)."""
        return self.probs_from_features(self.model.encode_image(images, normalize=True), levels)
