"""Binary classification metrics shared by training-time validation and evaluation (no scikit-learn)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class BinaryMetrics:
    """Metrics of hard calls at a fixed threshold plus the threshold-free AUROC."""

    n: int
    n_pos: int
    n_neg: int
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float
    specificity: float
    balanced_accuracy: float
    accuracy: float
    auroc: float

    def to_dict(self) -> dict:
        return asdict(self)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) of 0/1 arrays."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    return int((t & p).sum()), int((~t & p).sum()), int((~t & ~p).sum()), int((t & ~p).sum())


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean of sensitivity and specificity; NaN when one class is absent."""
    tp, fp, tn, fn = confusion(y_true, y_pred)
    if tp + fn == 0 or tn + fp == 0:
        return float("nan")
    return 0.5 * (tp / (tp + fn) + tn / (tn + fp))


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney U); NaN if one class."""
    t = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (1-based)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> BinaryMetrics:
    """All metrics for labels 0/1 and scores (calls are ``score >= threshold``)."""
    t = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= threshold).astype(int)
    tp, fp, tn, fn = confusion(t, pred)
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    n = len(t)
    return BinaryMetrics(
        n=n, n_pos=tp + fn, n_neg=tn + fp, tp=tp, fp=fp, tn=tn, fn=fn, sensitivity=float(sens),
        specificity=float(spec), balanced_accuracy=balanced_accuracy(t, pred),
        accuracy=float((tp + tn) / n) if n else float("nan"), auroc=auroc(t, s),
    )


AGGREGATIONS = ("max", "mean", "top2", "noisy_or")


def aggregate(values: np.ndarray, how: str = "max") -> float:
    """Patient-level score from slice scores: "max" (any slice positive), "mean", "top2" (mean of the top two)
    or "noisy_or" (1 - prod(1 - p): the chance that at least one slice is positive if slices were independent)."""
    v = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    if len(v) == 0:
        return float("nan")
    if how == "max":
        return float(v[0])
    if how == "mean":
        return float(v.mean())
    if how == "top2":
        return float(v[:2].mean())
    if how == "noisy_or":
        return float(1.0 - np.prod(1.0 - np.clip(v, 0.0, 1.0)))
    raise ValueError(f"unknown aggregation {how!r}; use one of {AGGREGATIONS}")
