"""`lgeclip demo --quick`: the whole chain at smoke size writes its results, figures and predictions."""

from __future__ import annotations

import json

import pytest

from lgeclip.cli.demo import run_demo


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    out = tmp_path / "demo"
    results = run_demo(out, quick=True)
    assert json.loads((out / "results.json").read_text()) == results
    for model in ("proposed", "image_only"):
        s = results["phantom"][model]
        assert s["n_patients"] >= 2 and s["n_slices"] == 3 * s["n_patients"]
        assert 0.0 <= s["balanced_accuracy"] <= 1.0 and (out / "runs" / model / "model.safetensors").is_file()
    assert results["phantom"]["proposed"]["task"] == "clip" and results["phantom"]["image_only"]["task"] == "image_only"
    anat = results["anatomy"]["phantom"]
    assert anat["n_slices"] > 0 and 0.0 <= anat["dice_myo_mean"] <= 1.0
    for fig in ("synth_preview.png", "training_curves.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    # held-out studies were predicted or recorded as failures (smoke-size anatomy nets often find no LV)
    p = results["predict"]
    assert p["n_predicted"] + p["n_failed"] == 2
    assert (out / "predict" / "failures.csv").is_file() and (out / "predict" / "predictions.csv").is_file()
    assert set(results["timings_s"]) >= {"phantom cohort", "ingest", "train segmentation net", "total"}
