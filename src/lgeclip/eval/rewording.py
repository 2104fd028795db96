"""Does the model tie scar to words, or only the level to the level suffix? A check with reworded captions.

Every caption and prompt ends with "This image is from <level> level.", and the level is visible in the image,
so a model can drive its contrastive loss down by matching levels alone. This check scores held-out slices
against captions no recipe trains on (``REWORDED``: paraphrases of "scar" and "no scar" with other words and
word order), each followed by the slice's own level suffix: P(scar) = softmax(scale x [mean similarity to the
scar paraphrases, mean similarity to the no-scar ones]). A model that learned only the level gives both sets
the same similarity, P = 0.5 everywhere and an AUROC of 0.5; one that learned scar ranks scarred slices higher.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lgeclip.metrics import auroc
from lgeclip.synth.templates import level_suffix

REWORDED: dict[str, tuple[str, ...]] = {
    "scar": (
        "Myocardial scar is present.",
        "The left ventricular wall contains an area of fibrosis.",
        "An infarct is visible in the myocardium.",
        "Bright enhancing tissue is seen within the wall.",
    ),
    "no_scar": (
        "The myocardium is free of scar.",
        "No fibrosis is present in the left ventricular wall.",
        "The myocardium appears normal without infarct.",
        "Nothing enhances within the wall.",
    ),
}


@torch.no_grad()
def reworded_scores(model: nn.Module, images: torch.Tensor, levels: list[str],
                    reworded: dict[str, tuple[str, ...]] = REWORDED) -> np.ndarray:
    """(B,) P(scar) of (B, 1, S, S) images against the reworded caption sets, each with the slice's level suffix."""
    feats = model.encode_image(images, normalize=True).float()  # (B, p)
    scale = float(model.get_logit_scale())
    out = np.empty(len(levels))
    for level in sorted(set(levels)):
        idx = [i for i, lv in enumerate(levels) if lv == level]
        sets = []
        for key in ("scar", "no_scar"):
            emb = model.encode_text([f"{t} {level_suffix(level)}" for t in reworded[key]], normalize=True).float()
            sets.append((feats[idx] @ emb.T).mean(dim=1))  # (b,)
        logits = scale * torch.stack(sets, dim=1)  # (b, 2)
        out[idx] = torch.softmax(logits, dim=1)[:, 0].cpu().numpy()
    return out


def reworded_check(model: nn.Module, dataset, truth: np.ndarray, batch_size: int = 64,
                   min_auroc: float = 0.6) -> dict:
    """AUROC of the reworded-caption scores of an evaluation ``dataset`` (``lgeclip.data.clip.ClipPairs``)
    against ``truth`` (per item: 1 scar, 0 none; the slice's pixel truth or its patient's report label), and
    whether it clears ``min_auroc``."""
    from lgeclip.data.clip import collate_pairs

    model.eval()
    scores = []
    for start in range(0, len(dataset), batch_size):
        batch = collate_pairs([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        scores.append(reworded_scores(model, batch["image"], batch["level"]))
    p = np.concatenate(scores) if scores else np.zeros(0)
    a = auroc(np.asarray(truth), p)
    return {"reworded_auroc": None if a != a else float(a), "passed": bool(a == a and a >= min_auroc),
            "min_auroc": min_auroc, "median_margin": float(np.median(np.abs(p - 0.5))) if len(p) else None,
            "n": int(len(p))}
