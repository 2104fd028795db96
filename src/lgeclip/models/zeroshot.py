"""Zero-shot LGE detection: softmax over the similarities to a positive and a negative prompt.

The prompt embeddings depend only on the model and the slice level, so they are computed once per model and
level and cached (the frozen text encoder is the slow part on CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from lgeclip.synth.templates import level_suffix

POSITIVE_PROMPT = "there is hyperenhancement in the myocardium."
NEGATIVE_PROMPT = "there is no hyperenhancement in the myocardium."

# Prompt ensembles (open_clip's zero-shot classifier, PMC-MSA's prompt diversity): each side is the normalised mean
# of its normalised template embeddings. The paper's pair is one member of "ensemble".
ENSEMBLE_WORDS: tuple[str, ...] = ("hyperenhancement", "late gadolinium enhancement", "delayed enhancement", "scar",
                                   "fibrosis", "infarct", "LGE")
ENSEMBLE_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("there is {e} in the myocardium.", "there is no {e} in the myocardium."),
    ("{e} is present.", "no {e} is present."),
    ("the myocardium shows {e}.", "the myocardium shows no {e}."),
    ("there is myocardial {e}.", "there is no myocardial {e}."),
)
PROMPT_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "paper": ((POSITIVE_PROMPT,), (NEGATIVE_PROMPT,)),
    "ensemble": (tuple(p.format(e=e) for p, _ in ENSEMBLE_TEMPLATES for e in ENSEMBLE_WORDS),
                 tuple(n.format(e=e) for _, n in ENSEMBLE_TEMPLATES for e in ENSEMBLE_WORDS)),
}


def prompt_set(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(positive prompts, negative prompts) of a named set ("paper" | "ensemble")."""
    if name not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {name!r}; use one of {sorted(PROMPT_SETS)}")
    return PROMPT_SETS[name]


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

    def __init__(self, model: nn.Module, positive: str | Sequence[str] = POSITIVE_PROMPT,
                 negative: str | Sequence[str] = NEGATIVE_PROMPT, prompts: str | None = None) -> None:
        """``positive`` / ``negative``: one prompt or a list (an ensemble); ``prompts`` names a ``PROMPT_SETS``
        entry instead."""
        self.model = model
        if prompts is not None:
            positive, negative = prompt_set(prompts)
        self.positive = (positive,) if isinstance(positive, str) else tuple(positive)
        self.negative = (negative,) if isinstance(negative, str) else tuple(negative)
        if not self.positive or not self.negative:
            raise ValueError("zero-shot needs at least one positive and one negative prompt")
        self._prompt_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def prompt_embeddings(self, level: str) -> torch.Tensor:
        """(2, p) normalised embeddings of [positive, negative] prompts for ``level`` (each side the normalised mean
        of its prompts' normalised embeddings)."""
        if level not in self._prompt_cache:
            suffix = level_suffix(level)
            texts = [f"{t} {suffix}" for t in (*self.positive, *self.negative)]
            # fp32 even inside a bf16 autocast: the two prompts differ by one word, bf16 would blur that difference
            with no_autocast():
                emb = self.model.encode_text(texts, normalize=True).float()  # (P + N, p)
            k = len(self.positive)
            sides = torch.stack([emb[:k].mean(0), emb[k:].mean(0)])  # (2, p)
            self._prompt_cache[level] = torch.nn.functional.normalize(sides, dim=-1)
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
