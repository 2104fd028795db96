"""Inference and evaluation: predictor from a run folder, prompt caching, evaluate_run numbers, predict_studies
outputs (prediction.json + .png per study, failures.csv for a study without an LGE series)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _clip_fixtures import RingAnatomy, train_tiny_run
from dicom_factory import AX_IOP, write_stack

from lgeclip.eval.evaluate import evaluate_run
from lgeclip.infer.predict import predict_studies
from lgeclip.infer.segments import LEVEL_SEGMENTS
from lgeclip.infer.zeroshot import Predictor, run_provenance
from lgeclip.metrics import balanced_accuracy
from lgeclip.preprocess.cache import read_cache


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("infer"))


def test_run_folder_records_inference_provenance(tiny_run):
    prov = run_provenance(tiny_run["run"])
    assert prov["seg_run"] is None and prov["oracle"] is True  # oracle cache: no anatomy nets
    assert prov["preprocess"]["crop"] == 64
    with pytest.raises(ValueError, match="oracle"):
        Predictor.from_run_dir(tiny_run["run"])


def test_prompt_embeddings_are_encoded_once_per_level(tiny_run):
    pred = Predictor.from_run_dir(tiny_run["run"], with_anatomy=False, device="cpu")
    calls = []
    encode = pred.model.encode_text
    pred.model.encode_text = lambda texts, **kw: (calls.append(list(texts)), encode(texts, **kw))[1]
    rng = np.random.default_rng(0)
    levels = ["basal", "mid", "apical", "mid"] * 5
    p1 = pred.score_images(rng.random((20, 32, 32)), levels, batch_size=3)
    p2 = pred.score_images(rng.random((4, 32, 32)), ["apical", "basal", "mid", "mid"])
    assert len(calls) == 3 and sorted(c[0].split(" This image")[0] for c in calls) == \
        ["there is hyperenhancement in the myocardium."] * 3
    assert p1.shape == (20,) and p2.shape == (4,) and ((p1 > 0) & (p1 < 1)).all()


def test_evaluate_run_numbers_match_its_tables(tiny_run, tmp_path):
    s = evaluate_run(tiny_run["run"], tiny_run["cache"], split="test", out=tmp_path, n_boot=200)
    with open(tmp_path / "patients.csv", newline="") as f:
        pats = list(csv.DictReader(f))
    with open(tmp_path / "slices.csv", newline="") as f:
        slices = list(csv.DictReader(f))
    assert s["n_patients"] == len(pats) >= 2 and s["n_slices"] == len(slices) == 3 * len(pats)
    # patient P(LGE) = max over its slices (the recipe's aggregation), call at 0.5
    for p in pats:
        mine = [float(r["p_lge"]) for r in slices if r["patient_key"] == p["patient_key"]]
        assert float(p["p_lge"]) == pytest.approx(max(mine), abs=1e-4)
    y = np.array([p["label"] == "positive" for p in pats])
    calls = np.array([float(p["p_lge"]) >= 0.5 for p in pats])
    expected = balanced_accuracy(y, calls)
    assert (s["balanced_accuracy"] is None) == (expected != expected)
    if s["balanced_accuracy"] is not None:
        assert s["balanced_accuracy"] == pytest.approx(expected)
    c = s["confusion"]
    assert c["tp"] + c["fn"] == y.sum() and c["tn"] + c["fp"] == (~y).sum()
    assert json.loads((tmp_path / "summary.json").read_text())["n_patients"] == s["n_patients"]
    # leak-checked: the oracle cache has no anatomy nets; the run's own train/val patients are not the test ones
    assert s["leak_check"]["ok"] is True and set(s["leak_check"]["upstream"]) == {"run train/val"}
    assert s["leak_check"]["n_evaluated_patients"] == len(pats)
    # the training-free floor beside the model, on the same slices: its AUROC is the CSV column's, and on these rings
    # (a bright 60-deg sector in a dark wall around a bright pool) it separates the scar slices
    from lgeclip.metrics import auroc

    floor = np.array([float(r["floor"]) for r in slices])
    truth = np.array([r["scar_truth"] == "1" for r in slices])
    assert ((floor >= 0) & (floor <= 1)).all() and s["floor_slice_auroc"] == pytest.approx(auroc(truth, floor))
    assert s["floor_slice_auroc"] > 0.9 and floor[truth].min() > floor[~truth].max()


def _phantom_studies(root: Path, n: int) -> Path:
    from lgeclip.phantom.cohort import write_patient
    from lgeclip.phantom.spec import generate_patient

    for i in range(n):
        write_patient(generate_patient(5, i), root)
    return root / "dicom"


def test_predict_studies_writes_predictions_and_failures(tiny_run, tmp_path):
    studies = _phantom_studies(tmp_path / "ph", 2)
    # a third study holding only an axial localizer: no LGE series -> failures.csv, the batch goes on
    write_stack(studies / "loc", np.random.default_rng(0), patient_id="99001122", patient_name="Roe^Richard",
                study_uid="1.2.3.4.5.6.7", description="localizer", series_number=1, n_slices=3, iop=AX_IOP)
    pred = Predictor.from_run_dir(tiny_run["run"], with_anatomy=False, device="cpu")
    pred.anatomy = RingAnatomy()
    out = tmp_path / "pred"
    s = predict_studies(studies, tiny_run["run"], out, predictor=pred)
    assert s["n_predicted"] == 2 and s["n_failed"] == 1
    with open(out / "failures.csv", newline="") as f:
        fails = list(csv.DictReader(f))
    assert len(fails) == 1 and "no LGE short-axis series" in fails[0]["reason"]
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 2
    for d in folders:
        j = json.loads((d / "prediction.json").read_text())
        assert (d / "prediction.png").stat().st_size > 5000
        assert j["patient_key"] == d.name and d.name.startswith("pt-")
        assert j["n_slices"] >= 3 and len(j["slices"]) == j["n_slices"]
        protocol = [s for s in j["slices"] if s["protocol_level"]]
        assert [s["protocol_level"] for s in protocol] == ["basal", "mid", "apical"]
        assert j["p_lge"] == pytest.approx(max(s["p_lge"] for s in protocol))
        assert j["lge"] == (j["p_lge"] >= 0.5)
        weights = hashlib.sha256((tiny_run["run"] / "model.safetensors").read_bytes()).hexdigest()
        assert j["model"]["model_sha256"] == weights[:16] and len(j["model"]["config_sha256"]) == 16
        # where: each scored slice answers for its level's AHA segments and wall thirds; the study table is the
        # maximum per segment over its level's slices, and the picture gains the bullseye beside the slices
        for sl in j["slices"]:
            assert {int(k) for k in sl["segments"]} == set(LEVEL_SEGMENTS[sl["level"]])
            assert set(sl["depth"]) == {"subendocardial", "mid-wall", "subepicardial"}
        assert [r["segment"] for r in j["segments"]] == list(range(1, 17))
        for r in j["segments"]:
            vals = [sl["segments"][str(r["segment"])] for sl in j["slices"] if str(r["segment"]) in sl["segments"]]
            assert r["n_slices"] == len(vals) and r["score"] == (max(vals) if vals else None)
        width = plt.imread(d / "prediction.png").shape[1]
        assert width > 1.9 * (j["n_slices"] + 1) * 110
        assert j["localisation_method"] == s["localisation_method"] == "bright" and "blood pool" in j["localisation"]
    # asked in words instead: each slice also carries the answers (wall, depth, pattern), each summing to 1
    sw = predict_studies(studies, tiny_run["run"], tmp_path / "words", predictor=pred, method="prompts")
    assert sw["localisation_method"] == "prompts" and sw["n_predicted"] == 2
    for d in sorted(p for p in (tmp_path / "words").iterdir() if p.is_dir()):
        j = json.loads((d / "prediction.json").read_text())
        assert j["localisation_method"] == "prompts" and "similarity" in j["localisation"]
        for sl in (x for x in j["slices"] if x["p_lge"] is not None):
            assert set(sl["answers"]) == {"location", "depth", "pattern"}
            assert {int(k) for k in sl["answers"]["location"]} == set(LEVEL_SEGMENTS[sl["level"]])
            assert all(sum(a.values()) == pytest.approx(1.0) for a in sl["answers"].values())
    # a wrong method is the caller's error, before any study (not one failure per study)
    with pytest.raises(ValueError, match="method must be one of"):
        predict_studies(studies, tiny_run["run"], tmp_path / "bad", predictor=pred, method="blur")
    assert not (tmp_path / "bad" / "failures.csv").exists()
    # nothing identifying leaves the DICOM headers: no names, IDs or birth dates in any output
    text = " ".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".json", ".csv"))
    from lgeclip.io.dicom import scan_tree

    series, _ = scan_tree(studies)
    for ser in series:
        for tok in (ser.patient_id, ser.patient_name.split("^")[0], ser.birth_date):
            assert tok and tok not in text


def test_predict_records_a_study_whose_slices_all_fail(tiny_run, tmp_path):
    studies = tmp_path / "dicom"
    # a valid PSIR stack of constant images: the stand-in anatomy finds no LV in any slice
    write_stack(studies / "a", np.random.default_rng(1), patient_id="55501234", study_uid="1.2.3.9",
                description="PSIR SAX", series_number=7, n_slices=4,
                image_type=("DERIVED", "PRIMARY", "PSIR"))
    pred = Predictor.from_run_dir(tiny_run["run"], with_anatomy=False, device="cpu")
    pred.anatomy = RingAnatomy()
    s = predict_studies(studies, tiny_run["run"], tmp_path / "out", predictor=pred, figures=False)
    assert s["n_predicted"] == 0 and s["n_failed"] == 1
    reason = (tmp_path / "out" / "failures.csv").read_text()
    assert "no slice could be scored" in reason and "no LV found" in reason and "55501234" not in reason


def test_demo_detects_a_cache_that_cannot_train(tiny_run, tmp_path):
    import shutil

    from lgeclip.cli.demo import _cache_unusable

    assert _cache_unusable(tiny_run["cache"]) is None  # stratified split: both labels in train, val and test
    broken = tmp_path / "cache"
    shutil.copytree(tiny_run["cache"], broken)
    with open(broken / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # every validation patient becomes report-negative
        if r["split"] == "val":
            r["label"] = "negative"
    with open(broken / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    why = _cache_unusable(broken)
    assert why is not None and "val split" in why


def test_predict_dicom_out_writes_an_sr_and_a_secondary_capture_in_the_source_study(tiny_run, tmp_path):
    import shutil
    import subprocess

    import highdicom as hd
    import pydicom

    from lgeclip.io.dicom import scan_tree

    studies = _phantom_studies(tmp_path / "ph", 1)
    pred = Predictor.from_run_dir(tiny_run["run"], with_anatomy=False, device="cpu")
    pred.anatomy = RingAnatomy()
    out = tmp_path / "pred"
    s = predict_studies(studies, tiny_run["run"], out, predictor=pred, dicom_out=True)
    assert s["n_predicted"] == 1 and s["n_failed"] == 0
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    j = json.loads((d / "prediction.json").read_text())
    series, _ = scan_tree(studies)
    src = {i.sop_uid: pydicom.dcmread(i.path, stop_before_pixels=True) for ser in series for i in ser.instances}
    any_src = next(iter(src.values()))
    sr = hd.sr.srread(d / "lgeclip_sr.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    # filed in the source study, new series and instance
    assert sr.StudyInstanceUID == any_src.StudyInstanceUID and sr.PatientID == any_src.PatientID
    assert sr.SeriesInstanceUID not in {x.SeriesInstanceUID for x in src.values()}
    assert sr.SOPInstanceUID not in src and sr.PatientBirthDate == ""
    def items(ds):  # every content item of the SR tree, depth first
        for item in ds.get("ContentSequence", []):
            yield item
            yield from items(item)

    text = str(sr)
    scored = [x for x in j["slices"] if x["p_lge"] is not None]
    refs = [it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for it in items(sr) if it.ValueType == "IMAGE"]
    assert len(refs) == len(scored) and set(refs) <= set(src)  # one source image per scored slice
    nums = [it for it in items(sr) if it.ValueType == "NUM"]
    seg_nums = [it for it in nums if it.ConceptNameCodeSequence[0].CodeValue == "LGE-SEG"]
    values = sorted(float(it.MeasuredValueSequence[0].NumericValue) for it in nums if it not in seg_nums)
    want = sorted([x["p_lge"] for x in scored] + [j["p_lge"]])  # the slices' P(LGE) + the patient's
    assert np.allclose(values, want, atol=1e-5)
    # the study's segment table, each score at its segment's SNOMED CT finding site (basal inferior = 4, etc.)
    from lgeclip.infer.dicom_out import segment_site

    table = {r["segment"]: r["score"] for r in j["segments"] if r["score"] is not None}
    assert table and len(seg_nums) == len(table)
    for it in seg_nums:
        site = next(x for x in it.ContentSequence if x.ConceptNameCodeSequence[0].CodeValue == "363698007")
        code = site.ConceptCodeSequence[0].CodeValue
        seg = next(k for k in table if segment_site(k).value == code)
        assert float(it.MeasuredValueSequence[0].NumericValue) == pytest.approx(table[seg], abs=1e-5)
    assert segment_site(4).meaning.lower().endswith("basal inferior segment")
    assert segment_site(14).meaning.lower().endswith("apical septal segment")
    assert ("Yes" if j["lge"] else "No") in text
    sc = pydicom.dcmread(d / "lgeclip_sc.dcm")
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.StudyInstanceUID == any_src.StudyInstanceUID
    assert sc.pixel_array.shape[-1] == 3 and sc.SeriesInstanceUID != sr.SeriesInstanceUID
    # identifiers stay in the DICOM files: none in the JSON / CSV outputs
    plain = " ".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".json", ".csv"))
    assert any_src.PatientID not in plain and str(any_src.PatientName).split("^")[0] not in plain
    if shutil.which("dciodvfy"):  # dicom3tools' validator, where installed
        for f in ("lgeclip_sr.dcm", "lgeclip_sc.dcm"):
            res = subprocess.run(["dciodvfy", str(d / f)], capture_output=True, text=True)
            errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
            assert not errors, (f, errors)


def test_evaluate_segments_tables_match_the_summary(tiny_run, tmp_path):
    from lgeclip.eval.segments import evaluate_segments
    from lgeclip.metrics import auroc

    s = evaluate_segments(tiny_run["run"], tiny_run["cache"], split="test", out=tmp_path, method="occlude")
    with open(tmp_path / "segments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seg = [r for r in rows if r["kind"] == "segment"]
    # every scored slice answers for each segment of its level and each wall third
    per_slice = {}
    for r in rows:
        per_slice.setdefault(r["slice_id"], []).append(r)
    assert len(per_slice) == s["n_slices"] - s["n_slices_without_segment_map"] > 0
    for rs in per_slice.values():
        level = rs[0]["level"]
        assert {int(r["region"]) for r in rs if r["kind"] == "segment"} <= set(LEVEL_SEGMENTS[level])
        assert {r["region"] for r in rs if r["kind"] == "depth"} <= {"subendocardial", "mid-wall", "subepicardial"}
    assert s["n_segment_pairs"] == len(seg) and s["n_segment_pairs_positive"] == sum(int(r["truth"]) for r in seg)
    y, p = np.array([r["truth"] == "1" for r in seg]), np.array([float(r["p"]) for r in seg])
    expected = auroc(y, p)
    assert (s["segment_auroc"] is None) == bool(np.isnan(expected))
    if s["segment_auroc"] is not None:
        assert s["segment_auroc"] == pytest.approx(expected, abs=1e-3)
    assert s["method"] == "occlude" and s["band_mm"] == 2.0 and s["leak_check"]["ok"] is True
    # the truth does not move with the method's band; asked in words, a region's score is P(LGE) x q <= P(LGE)
    s0 = evaluate_segments(tiny_run["run"], tiny_run["cache"], split="test", out=tmp_path / "b0", band_mm=0.0,
                           method="occlude")
    assert (s0["n_segment_pairs"], s0["n_segment_pairs_positive"]) == (s["n_segment_pairs"],
                                                                       s["n_segment_pairs_positive"])
    sp = evaluate_segments(tiny_run["run"], tiny_run["cache"], split="test", out=tmp_path / "pr", method="prompts")
    assert sp["method"] == "prompts" and sp["n_segment_pairs_positive"] == s["n_segment_pairs_positive"]
    with open(tmp_path / "pr" / "segments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(0 <= float(r["p"]) <= float(r["p_slice"]) + 1e-6 for r in rows if r["kind"] != "pattern")
    # the pattern (ischaemic vs not): the cohort's truth reached the cache; one row per slice asked, scored on the
    # truth-scar slices whose pattern is known, and the summary's AUROC is the rows' AUROC
    recs = [r for r in read_cache(tiny_run["cache"]) if r.split == "test"]
    known = [r for r in recs if r.scar_truth and r.scar_pattern]
    assert known and {r.scar_pattern for r in known} <= {"ischaemic", "mid-wall"}
    pat = [r for r in rows if r["kind"] == "pattern"]
    assert len(pat) == len(recs) and sum(r["truth"] != "" for r in pat) == len(known)
    assert sp["n_pattern_slices"] == {"ischaemic": sum(r.scar_pattern == "ischaemic" for r in known),
                                      "non_ischaemic": sum(r.scar_pattern != "ischaemic" for r in known)}
    assert sp["pattern_source"] == "asked in words (prompts)"
    y = np.array([r["truth"] == "1" for r in pat if r["truth"] != ""])
    q = np.array([float(r["p"]) for r in pat if r["truth"] != ""])
    expected = auroc(y, q)
    assert (sp["pattern_auroc"] is None) == bool(np.isnan(expected))
    if sp["pattern_auroc"] is not None:
        assert sp["pattern_auroc"] == pytest.approx(expected, abs=1e-3)
    assert sp["pattern_accuracy_at_half"] == pytest.approx(float(np.mean((q > 0.5) == y)), abs=1e-3)
    assert s["pattern_source"] == "endocardial share of the depth scores"


def test_evaluate_retrieval_on_held_out_patients(tiny_run, tmp_path):
    from lgeclip.eval.retrieval import evaluate_retrieval

    s = evaluate_retrieval(tiny_run["run"], tiny_run["cache"], split="test", out=tmp_path, shots=(1, 2), draws=3)
    n = s["n_distinct_reports"]
    assert s["n_patients"] >= 2 and 1 <= n <= s["n_patients"]
    for d in ("image_to_report", "report_to_image"):
        m = s[d]
        assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 1 and m["median_rank"] >= 1
    assert s["image_to_report"]["chance"]["R@1"] == pytest.approx(1 / n, abs=1e-4)
    assert set(s["few_shot"]) <= {"1", "2"} and s["leak_check"]["ok"] is True
    assert json.loads((tmp_path / "retrieval.json").read_text())["n_patients"] == s["n_patients"]
