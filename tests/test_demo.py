"""`lgeclip demo --quick`: the whole chain at smoke size writes its results, figures and predictions."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_acdc import _write_patient
from test_emidec import _fake_emidec

from lgeclip.cli.demo import DemoPlan, run_demo
from lgeclip.preprocess.cache import read_cache


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
    # the second phantom cohort: every patient evaluated, none of them upstream of either model
    cache_keys = {r.patient_key for r in read_cache(out / "cache")}
    fresh_keys = {r.patient_key for r in read_cache(out / "cache_fresh")}
    assert len(fresh_keys) == 4 and not fresh_keys & cache_keys
    for model in ("proposed", "image_only"):
        s = results["phantom_fresh"][model]
        assert s["split"] == "all" and s["n_patients"] == 4 and s["cache"].endswith("cache_fresh")
        assert s["leak_check"]["ok"] is True
    anat = results["anatomy"]["phantom"]
    assert anat["n_slices"] > 0 and 0.0 <= anat["dice_myo_mean"] <= 1.0
    for fig in ("synth_preview.png", "training_curves.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    # held-out studies were predicted or recorded as failures (smoke-size anatomy nets often find no LV)
    p = results["predict"]
    assert p["n_predicted"] + p["n_failed"] == 2
    assert (out / "predict" / "failures.csv").is_file() and (out / "predict" / "predictions.csv").is_file()
    assert set(results["timings_s"]) >= {"phantom cohort", "ingest", "train segmentation net", "total"}


@pytest.mark.slow
def test_quick_demo_learns_anatomy_from_acdc_and_frames_emidec(tmp_path, monkeypatch):
    """With ACDC present the anatomy nets train on it too, are evaluated on its held-out patients, and EMIDEC is
    re-ingested with its report walls named in the RVIP frame before preprocessing (smoke-size nets: wiring only)."""
    acdc, emidec = tmp_path / "acdc", tmp_path / "emidec"
    for i, group in enumerate(["NOR", "MINF", "DCM", "HCM", "RV"] * 2):
        _write_patient(acdc, f"patient{i + 1:03d}", group)
    _fake_emidec(emidec)
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")
    monkeypatch.setenv("LGECLIP_ACDC", str(acdc))
    monkeypatch.setenv("LGECLIP_EMIDEC", str(emidec))
    out = tmp_path / "demo"
    results = run_demo(out, plan=dataclasses.replace(DemoPlan.quick(), use_acdc=True, use_emidec=True))
    assert {"ingest ACDC", "ingest EMIDEC", "ingest EMIDEC in the RVIP frame", "preprocess EMIDEC"} <= set(
        results["timings_s"])
    lm_cohorts = list(json.loads((out / "runs" / "landmarks" / "split.json").read_text())["cohorts"])
    assert any(c.endswith("acdc_cohort") for c in lm_cohorts) and len(lm_cohorts) == 2
    acdc_eval = results["anatomy"]["acdc"]
    assert acdc_eval["n_slices"] > 0 and acdc_eval["rvip_mm"]["anterior"]["n"] > 0
    framed = json.loads((out / "emidec_framed" / "cohort.json").read_text())
    plain = json.loads((out / "emidec_cohort" / "cohort.json").read_text())
    assert framed["n_slices"] == plain["n_slices"] > 0
    stats = framed["wall_frame"]
    assert stats["rvip_frame"] + stats["display_fallback"] == framed["n_slices"]
    assert (out / "emidec_cache" / "cache.json").is_file()
