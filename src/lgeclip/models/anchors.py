"""Prompt anchors: text-derived targets for the zero-shot prompt pair (beyond the paper).

A caption c scores ``d(c) = cos(c, P+) - cos(c, P-)`` against the positive and negative side of a prompt set at
its level, in the frozen text space. With the 28-template ensemble (``models.zeroshot.PROMPT_SETS``) ``d`` ranks
the phantom's report sentences by what they say at AUROC 0.99, but its zero is biased: many negative sentences
("No LGE to suggest infarction.") sit on the positive side, so an image that matched its caption exactly would
be called positive. The boundary is therefore read off the report corpus itself, with no label: the training
captions' scores form two modes (statements of scar and of its absence) and the threshold is the density valley
between them (a Gaussian kernel density estimate, Silverman's bandwidth). A caption's anchor target is
``sigmoid((d - threshold) / bandwidth)``: sure far from the valley, soft near it. Everything here is text.
"""

from __future__ import annotations

import numpy as np
import torch


def valley_threshold(x: np.ndarray, weights: np.ndarray | None = None, grid: int = 512) -> dict:
    """The density valley between the two highest modes of ``x`` (Gaussian KDE, Silverman's bandwidth; a mode is a
    local maximum at least a tenth as high as the highest).

    Returns ``{"threshold", "bandwidth", "modes": [low, high], "unimodal": bool}``; a unimodal sample gets the
    threshold 0 (the prompt pair's own boundary) and ``unimodal: True``."""
    from scipy.stats import gaussian_kde

    x = np.asarray(x, np.float64).ravel()
    if x.size < 3 or np.ptp(x) == 0:
        raise ValueError(f"a density valley needs at least three distinct values, got {x.size} points")
    kde = gaussian_kde(x, bw_method="silverman", weights=weights)
    bandwidth = float(np.sqrt(kde.covariance[0, 0]))
    xs = np.linspace(x.min(), x.max(), grid)
    ys = kde(xs)
    # modes: local maxima of the density at least a tenth as high as the highest (tail wiggles are not modes)
    peaks = [i for i in range(1, grid - 1) if ys[i] >= ys[i - 1] and ys[i] > ys[i + 1] and ys[i] >= 0.1 * ys.max()]
    if len(peaks) < 2:
        return {"threshold": 0.0, "bandwidth": bandwidth, "modes": [float(xs[int(np.argmax(ys))])] * 2,
                "unimodal": True}
    lo, hi = sorted(sorted(peaks, key=lambda i: -ys[i])[:2])
    valley = lo + int(np.argmin(ys[lo: hi + 1]))
    return {"threshold": float(xs[valley]), "bandwidth": bandwidth, "modes": [float(xs[lo]), float(xs[hi])],
            "unimodal": False}


def anchor_posterior(d: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """P(scar side) = sigmoid((d - t) / h) of caption scores ``d`` and ``threshold = [t, h]`` (float32)."""
    t, h = threshold.float().unbind()
    return torch.sigmoid((d.float() - t) / h)
