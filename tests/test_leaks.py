"""THE leak test: a test patient that reached an upstream training (the segmentation net, its fine-tuning parent,
the vision init, the run itself) makes check_no_leak and evaluate_run refuse; the clean configuration passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _clip_fixtures import make_tiny_cache

from lgeclip.eval.evaluate import evaluate_run
from lgeclip.eval.leaks import LeakError, check_no_leak, upstream_patients
from lgeclip.io.splits import patient_split
from lgeclip.preprocess.cache import read_cache


def _anatomy_run(folder: Path, cohort: Path, fold: int = 0, extra_train: list[str] = (), init_run: Path | None = None,
                 with_split: bool = True) -> Path:
    """A hand-written anatomy run folder (split.json as train_segmentation writes it)."""
    folder.mkdir(parents=True)
    split = patient_split(cohort, fold)
    patients = {s: sorted(k for k, v in split.items() if v == s) for s in ("train", "val", "test")}
    patients["train"] = sorted({*patients["train"], *extra_train})
    patients["test"] = sorted(set(patients["test"]) - set(extra_train))
    if with_split:
        (folder / "split.json").write_text(json.dumps({"fold": fold, "train_splits": ["train"], "val_split": "val",
                                                       "cohorts": {str(cohort): {"patients": patients}}}))
    task = {"data": {"fold": fold}, **({"init_run": str(init_run)} if init_run else {})}
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": task}))
    (folder / "encoder.safetensors").write_bytes(b"")
    return folder


@pytest.fixture()
def setup(tmp_path):
    cache = make_tiny_cache(tmp_path, n_patients=12, size=64, seed=4)
    meta = json.loads((cache / "cache.json").read_text())
    cohort = Path(meta["cohort"])
    test = sorted({r.patient_key for r in read_cache(cache) if r.split == "test"})
    assert test  # the fold-0 test patients the evaluation scores

    def wire(seg: Path, landmarks: Path | None = None, vision: Path | None = None) -> Path:
        (cache / "cache.json").write_text(json.dumps({**meta, "seg_run": str(seg),
                                                      "landmarks_run": str(landmarks or seg)}))
        run = tmp_path / f"run_{seg.name}_{vision.name if vision else 'random'}"
        model = {"vision_init": "segmentation", "vision_init_path": str(vision)} if vision else \
            {"vision_init": "random"}
        run.mkdir(exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"task": {
            "task": "clip", "cache": str(cache), "data": {"train_splits": ["train"], "val_split": "val"},
            "model": model}}))
        return run

    return {"cache": cache, "cohort": cohort, "test": test, "wire": wire, "tmp": tmp_path}


def test_clean_configuration_passes(setup):
    clean = _anatomy_run(setup["tmp"] / "seg", setup["cohort"])
    lm = _anatomy_run(setup["tmp"] / "lm", setup["cohort"])
    run = setup["wire"](clean, lm, vision=clean)
    res = check_no_leak(run, setup["cache"], "test")
    assert res["ok"] is True and res["n_evaluated_patients"] == len(setup["test"])
    assert set(res["upstream"]) == {"run train/val", f"seg_run {clean}", f"landmarks_run {lm}",
                                    f"model.vision_init {clean}"}
    split = patient_split(setup["cohort"], 0)
    assert upstream_patients(run, setup["cache"])["run train/val"] == \
        {r.patient_key for r in read_cache(setup["cache"]) if split[r.patient_key] in ("train", "val")}


def test_a_test_patient_in_the_seg_net_training_is_a_leak(setup):
    leaked = setup["test"][0]
    seg = _anatomy_run(setup["tmp"] / "seg_leaky", setup["cohort"], extra_train=[leaked])
    run = setup["wire"](seg)
    with pytest.raises(LeakError, match=rf"1 of the {len(setup['test'])} evaluated 'test' patients .* seg_run "
                                        rf".*seg_leaky \(e\.g\. {leaked}\)"):
        check_no_leak(run, setup["cache"], "test")
    with pytest.raises(LeakError, match="seg_run"):  # refused before any model is loaded or scored
        evaluate_run(run, setup["cache"], split="test", out=setup["tmp"] / "eval")
    assert not (setup["tmp"] / "eval").exists()
    with pytest.raises(LeakError, match="seg_run"):  # the cache alone (before training) already fails
        check_no_leak(None, setup["cache"], "test")


def test_leaks_through_vision_init_init_run_other_folds_and_own_training(setup):
    cohort, tmp, wire = setup["cohort"], setup["tmp"], setup["wire"]
    clean = _anatomy_run(tmp / "seg", cohort)
    # the vision encoder came from a net trained on another fold of this cohort
    other_fold = next(f for f in range(1, 5) if set(setup["test"]) & {k for k, v in patient_split(cohort, f).items()
                                                                        if v == "train"})
    with pytest.raises(LeakError, match="model.vision_init .*seg_fold"):
        check_no_leak(wire(clean, vision=_anatomy_run(tmp / "seg_fold", cohort, fold=other_fold)), setup["cache"])
    # the seg net was fine-tuned from a run that trained on a test patient
    parent = _anatomy_run(tmp / "parent", cohort, extra_train=[setup["test"][-1]])
    child = _anatomy_run(tmp / "child", cohort, init_run=parent)
    with pytest.raises(LeakError, match="init_run .*parent"):
        check_no_leak(wire(child), setup["cache"])
    # evaluating the run's own validation patients
    with pytest.raises(LeakError, match="'val' patients .* run train/val"):
        check_no_leak(wire(clean), setup["cache"], "val")
    # an anatomy run that does not say what it trained on cannot be verified
    with pytest.raises(LeakError, match="no split.json"):
        check_no_leak(wire(_anatomy_run(tmp / "old", cohort, with_split=False)), setup["cache"])
