"""Patient-level cross-validation: folds partition the patients, fold caches are valid views, out-of-fold
predictions cover every patient once, pooled metrics match a hand computation, finished folds are reused."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from _clip_fixtures import make_tiny_cache, make_tiny_text_model, tiny_overrides

from lgeclip.eval import crossval as cv
from lgeclip.eval.leaks import LeakError
from lgeclip.io.splits import assign_folds, fold_splits, patient_split, read_splits, splits_digest
from lgeclip.preprocess.cache import read_cache


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")


def test_folds_partition_and_stratify():
    labels = {f"p{i:02d}": ("positive" if i < 7 else "negative") for i in range(17)}
    fold_of = assign_folds(labels, folds=3, seed=4)
    assert set(fold_of) == set(labels)
    sizes = Counter(fold_of.values())
    assert sorted(sizes) == [0, 1, 2] and max(sizes.values()) - min(sizes.values()) <= 1
    pos = Counter(f for k, f in fold_of.items() if labels[k] == "positive")
    assert max(pos.values()) - min(pos.values()) <= 1  # 7 positives over 3 folds: 3/2/2
    assert fold_of == assign_folds(labels, folds=3, seed=4)  # deterministic
    for k in range(3):
        s = fold_splits(labels, fold_of, k, val_fraction=0.2, seed=0)
        assert set(s) == set(labels)
        assert {p for p, v in s.items() if v == "test"} == {p for p, f in fold_of.items() if f == k}
        for lab in ("positive", "negative"):  # both classes in val, both in train
            assert {labels[p] for p, v in s.items() if v == "val"} == {"positive", "negative"}
            assert any(v == "train" and labels[p] == lab for p, v in s.items())
    with pytest.raises(ValueError):
        assign_folds(labels, folds=1)
    with pytest.raises(ValueError):
        assign_folds({"a": "positive"}, folds=2)


def test_pooled_metrics_hand_case():
    rows = [{"label": "positive", "p_lge": "0.9"}, {"label": "positive", "p_lge": "0.4"},
            {"label": "negative", "p_lge": "0.3"}, {"label": "negative", "p_lge": "0.6"},
            {"label": "negative", "p_lge": "0.1"}, {"label": "unknown", "p_lge": "0.99"}]
    m = cv.pooled_metrics(rows, threshold=0.5, n_boot=50)
    # sens 1/2, spec 2/3 -> balanced 7/12; AUROC: pairs (pos > neg) 0.9 > all 3, 0.4 > 0.3 and 0.1 -> 5/6
    assert m["n_patients"] == 5
    assert m["balanced_accuracy"] == pytest.approx(7 / 12)
    assert m["auroc"] == pytest.approx(5 / 6)
    assert m["confusion"] == {"tp": 1, "fp": 1, "tn": 2, "fn": 1}


def test_crossval_end_to_end_and_resume(tmp_path, monkeypatch):
    cache = make_tiny_cache(tmp_path, n_patients=10, size=64, seed=3, n_folds=2, val_fraction=0.2)
    cohort = Path(json.loads((cache / "cache.json").read_text())["cohort"])
    text = make_tiny_text_model(tmp_path)
    over = tiny_overrides(text, **{"loop.epochs": 1, "loop.max_steps": 2, "loop.batch_size": 4})
    out = tmp_path / "cv"
    with pytest.raises(ValueError, match="n_folds=2, asked for 3"):  # the cohort's splits.json decides the folds
        cv.crossval(cache, out, recipe="smoke", folds=3, overrides=over)
    with pytest.raises(ValueError, match="--seed"):  # crossval seeds every fold: a loop.seed override would be lost
        cv.crossval(cache, out, recipe="smoke", overrides=[*over, "loop.seed=1"])
    s = cv.crossval(cache, out, recipe="smoke", seed=0, overrides=over)

    recs = read_cache(cache)
    labels = cv.patient_labels(recs)
    splits = read_splits(cohort)
    with (out / "oof_patients.csv").open(newline="") as f:
        oof = list(csv.DictReader(f))
    assert sorted(r["patient_key"] for r in oof) == sorted(labels)  # every patient exactly once
    assert all(int(r["fold"]) == splits["patients"][r["patient_key"]]["fold"] for r in oof)
    assert s["pooled"]["n_patients"] == sum(v in ("positive", "negative") for v in labels.values())
    assert len(s["per_fold"]) == 2 and json.loads((out / "crossval.json").read_text())["folds"] == 2
    assert s["splits"]["digest"] == splits_digest(cohort) and s["anatomy"] == "shared"
    for f in s["per_fold"]:  # oracle cache: no anatomy nets upstream, only the fold run's own train/val patients
        up = f["upstream"]
        assert up["seg_run"] is None and up["leak_check"]["ok"] is True
        assert set(up["leak_check"]["upstream"]) == {"run train/val"}

    view = read_cache(out / "folds" / "fold1" / "cache")  # a valid cache: same slices, re-split
    assert [r.slice_id for r in view] == [r.slice_id for r in recs]
    assert all(Path(r.path).is_file() for r in view)
    for name in ("train", "val", "test"):  # exactly fold 1 of the cohort's splits.json
        assert {r.patient_key for r in view if r.split == name} == set(splits["folds"][1][name]) & set(labels)
    assert not any(Path(p).suffix == ".npz" for p in (out / "folds").rglob("*"))  # nothing copied
    meta = json.loads((out / "folds" / "fold1" / "cache" / "cache.json").read_text())
    assert meta["crossval"]["fold"] == 1 and meta["split"]["test"] == sum(r.split == "test" for r in view)
    assert meta["splits"]["fold"] == 1

    def no_training(*a, **k):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr("lgeclip.train.clip.train_clip", no_training)
    again = cv.crossval(cache, out, recipe="smoke", seed=0, overrides=over)
    assert again["pooled"] == s["pooled"]
    with pytest.raises(ValueError, match="anatomy"):  # the same folder cannot switch anatomy modes
        cv.crossval(cache, out, recipe="smoke", overrides=over, anatomy="per_fold")


def _fake_anatomy_run(out: Path, cohorts: list[Path], fold: int) -> None:
    """A stand-in anatomy run folder: split.json with fold ``fold`` of each cohort, as train_* writes it."""
    out.mkdir(parents=True, exist_ok=True)
    cohorts_rec = {str(c): {"patients": {s: sorted(k for k, v in patient_split(c, fold).items() if v == s)
                                         for s in ("train", "val", "test")}} for c in cohorts}
    (out / "split.json").write_text(json.dumps({"fold": fold, "train_splits": ["train"], "val_split": "val",
                                                "cohorts": cohorts_rec}))
    (out / "config.yaml").write_text(f"task:\n  data:\n    fold: {fold}\n")
    (out / "encoder.safetensors").write_bytes(b"")


def test_shared_anatomy_that_saw_a_fold_is_refused_before_training(tmp_path, monkeypatch):
    """Nets trained on fold 0 of the cohort trained on patients that fold 1 tests: crossval stops before training."""
    cache = make_tiny_cache(tmp_path, n_patients=10, size=64, seed=3, n_folds=2, val_fraction=0.2)
    cohort = Path(json.loads((cache / "cache.json").read_text())["cohort"])
    seg = tmp_path / "seg_fold0"
    _fake_anatomy_run(seg, [cohort], fold=0)
    meta = json.loads((cache / "cache.json").read_text())
    (cache / "cache.json").write_text(json.dumps({**meta, "seg_run": str(seg)}))

    def no_training(*a, **k):
        raise AssertionError("trained despite a leak")

    monkeypatch.setattr("lgeclip.train.clip.train_clip", no_training)
    with pytest.raises(LeakError, match=r"crossval fold 1 .*seg_run .*per_fold"):
        cv.crossval(cache, tmp_path / "cv", recipe="smoke")


def test_per_fold_anatomy_trains_nets_and_caches_per_fold(tmp_path, monkeypatch):
    """per_fold: fold k's anatomy nets train with data.fold=k, its cache is built with them at fold=k, every fold
    passes the leak check; nets that ignored the fold would be caught before the CLIP training."""
    from lgeclip.preprocess.cache import build_cache

    cache = make_tiny_cache(tmp_path, n_patients=10, size=64, seed=3, n_folds=2, val_fraction=0.2)
    cohort = Path(json.loads((cache / "cache.json").read_text())["cohort"])
    calls: list[tuple] = []
    ignore_fold = {"on": True}

    def fake_train(kind):
        def train(cohorts, out, config=None, overrides=None, resume=False):
            fold = int(next(o for o in overrides if o.startswith("data.fold=")).split("=")[1])
            calls.append((kind, fold, [str(c) for c in cohorts]))
            _fake_anatomy_run(Path(out), list(cohorts), 0 if ignore_fold["on"] else fold)
            return {}
        return train

    def fake_build(cohort, seg_run, landmarks_run, out, config=None, overrides=None):
        calls.append(("cache", overrides))
        return build_cache(cohort, seg_run, landmarks_run, out, config=config, overrides=overrides, oracle=True)

    monkeypatch.setattr("lgeclip.train.anatomy.train_segmentation", fake_train("seg"))
    monkeypatch.setattr("lgeclip.train.anatomy.train_landmarks", fake_train("landmarks"))
    monkeypatch.setattr("lgeclip.preprocess.cache.build_cache", fake_build)
    text = make_tiny_text_model(tmp_path)
    over = tiny_overrides(text, **{"loop.epochs": 1, "loop.max_steps": 1, "loop.batch_size": 4})
    with pytest.raises(LeakError, match="crossval fold 1"):  # nets trained on fold 0 cannot serve fold 1
        cv.crossval(cache, tmp_path / "cv_bad", recipe="smoke", overrides=over, anatomy="per_fold")
    assert (tmp_path / "cv_bad" / "runs" / "fold0" / "model.safetensors").is_file()
    assert not (tmp_path / "cv_bad" / "runs" / "fold1").exists()  # refused before training fold 1

    ignore_fold["on"] = False
    calls.clear()
    out = tmp_path / "cv"
    s = cv.crossval(cache, out, recipe="smoke", overrides=over, anatomy="per_fold")
    assert [c[:2] for c in calls] == [("seg", 0), ("landmarks", 0), ("cache", ["fold=0"]),
                                      ("seg", 1), ("landmarks", 1), ("cache", ["fold=1"])]
    splits = read_splits(cohort)
    for k, f in enumerate(s["per_fold"]):
        fold_cache = out / "folds" / f"fold{k}" / "cache"
        assert {r.patient_key for r in read_cache(fold_cache) if r.split == "test"} == set(splits["folds"][k]["test"])
        assert f["upstream"]["seg_run"] == str((out / "anatomy" / f"fold{k}" / "seg").resolve())
        check = f["upstream"]["leak_check"]
        assert check["ok"] is True and any(n.startswith("seg_run") and v > 0 for n, v in check["upstream"].items())
