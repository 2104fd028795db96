import math

import numpy as np
import pytest

from lgeclip.metrics import aggregate, auroc, balanced_accuracy, binary_metrics


def test_balanced_accuracy_hand_computed():
    # 3 positives (2 caught), 5 negatives (4 correct): (2/3 + 4/5) / 2 = 0.7333...
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    p = [1, 1, 0, 0, 0, 0, 0, 1]
    assert balanced_accuracy(y, p) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert math.isnan(balanced_accuracy([1, 1], [1, 0]))


def test_auroc_hand_computed_with_ties():
    # pos scores 0.9, 0.4; neg scores 0.4, 0.1 -> pairs: (0.9>0.4)=1, (0.9>0.1)=1, (0.4=0.4)=0.5, (0.4>0.1)=1
    assert auroc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert auroc([1, 0], [0.2, 0.8]) == 0.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]])
    assert auroc(y, s) == pytest.approx(brute)


def test_binary_metrics_and_aggregation():
    m = binary_metrics([1, 0, 1, 0], [0.7, 0.2, 0.4, 0.6])
    assert (m.tp, m.fp, m.tn, m.fn) == (1, 1, 1, 1)
    assert m.sensitivity == 0.5 and m.specificity == 0.5 and m.auroc == 0.75
    assert aggregate([0.1, 0.8, 0.3]) == 0.8
    assert aggregate([0.1, 0.8, 0.3], "top2") == pytest.approx(0.55)
    with pytest.raises(ValueError):
        aggregate([0.1], "median")
