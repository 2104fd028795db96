"""Study-level retrieval and few-shot numbers on hand-made similarity matrices and embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from lgeclip.eval.retrieval import chance_recall, few_shot_curves, first_relevant_ranks, retrieval_metrics


def test_ranks_count_only_wrong_items_above_the_best_right_one():
    sim = np.array([[0.9, 0.5, 0.1],
                    [0.8, 0.7, 0.9],
                    [0.2, 0.3, 0.1]])
    right = np.eye(3, dtype=bool)
    assert first_relevant_ranks(sim, right).tolist() == [1, 3, 3]
    # two right answers for the last query (identical reports): the better one counts
    right[2, 1] = True
    assert first_relevant_ranks(sim, right).tolist() == [1, 3, 1]


def test_metrics_and_chance_by_hand():
    sim = np.array([[0.9, 0.5, 0.1, 0.0],
                    [0.8, 0.7, 0.9, 0.0],
                    [0.2, 0.3, 0.1, 0.0],
                    [0.0, 0.0, 0.0, 1.0]])
    m = retrieval_metrics(sim, np.eye(4, dtype=bool), ks=(1, 2))
    assert m["R@1"] == 0.5 and m["R@2"] == 0.5 and m["median_rank"] == 2.0  # ranks 1, 3, 3, 1
    assert m["chance"]["R@1"] == 0.25 and m["chance"]["R@2"] == 0.5 and m["chance"]["median_rank"] == 2.5
    # with m relevant of n: 1 - C(n - m, k) / C(n, k); 2 of 4 at k = 1 -> 0.5, at k = 2 -> 1 - 1/6
    assert chance_recall(4, np.array([2]), 1) == pytest.approx(0.5)
    assert chance_recall(4, np.array([2]), 2) == pytest.approx(5 / 6)
    assert chance_recall(4, np.array([1]), 10) == 1.0


def test_few_shot_learns_a_separable_direction_and_caps_k():
    rng = np.random.default_rng(0)
    d = 16

    def draw(n, pos):
        x = rng.normal(size=(n, d)) * 0.3
        x[:, 0] += 1.0 if pos else -1.0
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    train_x = np.concatenate([draw(6, True), draw(30, False)])
    train_y = np.array([True] * 6 + [False] * 30)
    test_x = np.concatenate([draw(20, True), draw(20, False)])
    test_y = np.array([True] * 20 + [False] * 20)
    out = few_shot_curves(train_x, train_y, test_x, test_y, shots=(1, 4, 16), draws=5)
    assert out["16"]["k_per_class"] == 6  # only 6 positives to draw from
    for k in ("1", "4", "16"):
        assert out[k]["prototype"]["auroc"]["mean"] > 0.9 and out[k]["probe"]["auroc"]["mean"] > 0.9
    # and chance-level when the labels carry nothing
    noise = few_shot_curves(train_x, rng.permutation(train_y), test_x, rng.permutation(test_y), shots=(4,),
                            draws=10)
    assert abs(noise["4"]["prototype"]["auroc"]["mean"] - 0.5) < 0.25
