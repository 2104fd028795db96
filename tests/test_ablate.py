"""Ablation tables: mean ± sd over seeds against hand-computed values, the markdown shape, the paper comparison."""

from __future__ import annotations

import math

import pytest

from lgeclip.eval.ablate import load_variants, mean_sd, render_markdown, summarise


def test_mean_sd_hand_case():
    assert mean_sd([0.6, 0.8, 0.7]) == pytest.approx((0.7, 0.1))  # sample sd of 0.6/0.7/0.8 is 0.1
    assert mean_sd([0.5]) == (0.5, 0.0)
    mu, sd = mean_sd([float("nan"), 0.4, 0.6])
    assert mu == pytest.approx(0.5) and sd == pytest.approx(math.sqrt(0.02))
    assert all(math.isnan(x) for x in mean_sd([]))


def test_summary_and_markdown_tables():
    variants = load_variants()
    assert "init_imagenet" not in variants  # only with a weights file
    runs = {
        "proposed": [{"seed": 0, "balanced_accuracy": 0.7, "auroc": 0.8}, {"seed": 1, "balanced_accuracy": 0.9,
                                                                          "auroc": 0.9}],
        "image_only": [{"seed": 0, "balanced_accuracy": 0.85, "auroc": 0.95}],
        "no_synth": [{"seed": 0, "balanced_accuracy": 0.6, "auroc": 0.7}],
        "no_caption": [{"seed": 0, "balanced_accuracy": 0.8, "auroc": 0.9}],
        "no_templates": [{"seed": 0, "balanced_accuracy": 0.5, "auroc": 0.5}],
    }
    s = summarise(runs, variants)
    assert s["proposed"]["balanced_accuracy"]["mean"] == pytest.approx(0.8)
    assert s["proposed"]["balanced_accuracy"]["sd"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(s["proposed"]["sensitivity"]["mean"])  # missing metric -> NaN, rendered as a dash
    md = render_markdown(s, "cpu", 2)
    assert "| proposed | 0.800 ± 0.141 | 0.850 ± 0.071 | — |" in md
    assert "Table 1" in md and "Table 2" in md and "Table 3" in md  # proposed doubles as the segmentation init
    assert "- proposed vs image_only: balanced acc. 0.800 vs 0.850: NOT as in the paper" in md
    assert "- proposed vs no_synth: balanced acc. 0.800 vs 0.600: same as the paper" in md
    assert "- proposed vs no_caption: balanced acc. 0.800 vs 0.800: tie" in md
    assert "Beyond the paper" in md and "proposed vs no_templates" not in md  # no paper counterpart


def test_markdown_names_upstream_runs_and_leak_checks():
    variants = load_variants()
    runs = {"proposed": [{"seed": 0, "balanced_accuracy": 0.7, "leak_check": {"ok": True}},
                         {"seed": 1, "balanced_accuracy": 0.8, "leak_check": {"ok": False, "allow_leak": True}}]}
    upstream = {"seg_run": "/runs/seg", "landmarks_run": "/runs/lm",
                "splits": {"file": "/cohort/splits.json", "digest": "abc123", "fold": 0}}
    md = render_markdown(summarise(runs, variants), "cpu", 2, upstream)
    assert "segmentation run: `/runs/seg`; RVIP run: `/runs/lm`" in md
    assert "`/cohort/splits.json` (digest abc123, fold 0)" in md
    assert "passed for 1 of 2 evaluated runs" in md
    assert "## Upstream" not in render_markdown(summarise(runs, variants), "cpu", 2)
