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
from lgeclip.preprocess.cache import read_cache


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("LGECLIP_NO_PROGRESS", "1")


def test_folds_partition_and_stratify():
    labels = {f"p{i:02d}": ("positive" if i < 7 else "negative") for i in range(17)}
    fold_of = cv.assign_folds(labels, folds=3, seed=4)
    assert set(fold_of) == set(labels)
    sizes = Counter(fold_of.values())
    assert sorted(sizes) == [0, 1, 2] and max(sizes.values()) - min(sizes.values()) <= 1
    pos = Counter(f for k, f in fold_of.items() if labels[k] == "positive")
    assert max(pos.values()) - min(pos.values()) <= 1  # 7 positives over 3 folds: 3/2/2
    assert fold_of == cv.assign_folds(labels, folds=3, seed=4)  # deterministic
    for k in range(3):
        s = cv.fold_splits(labels, fold_of, k, val_fraction=0.2, seed=0)
        assert set(s) == set(labels)
        assert {p for p, v in s.items() if v == "test"} == {p for p, f in fold_of.items() if f == k}
        for lab in ("positive", "negative"):  # both classes in val, both in train
            assert {labels[p] for p, v in s.items() if v == "val"} == {"positive", "negative"}
            assert any(v == "train" and labels[p] == lab for p, v in s.items())
    with pytest.raises(ValueError):
        cv.assign_folds(labels, folds=1)
    with pytest.raises(ValueError):
        cv.assign_folds({"a": "positive"}, folds=2)


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
    cache = make_tiny_cache(tmp_path, n_patients=10, size=64, seed=3)
    text = make_tiny_text_model(tmp_path)
    over = tiny_overrides(text, **{"loop.epochs": 1, "loop.max_steps": 2, "loop.batch_size": 4})
    out = tmp_path / "cv"
    s = cv.crossval(cache, out, recipe="smoke", folds=2, seed=0, val_fraction=0.2, overrides=over)

    recs = read_cache(cache)
    labels = cv.patient_labels(recs)
    fold_of = cv.assign_folds(labels, 2, 0)
    with (out / "oof_patients.csv").open(newline="") as f:
        oof = list(csv.DictReader(f))
    assert sorted(r["patient_key"] for r in oof) == sorted(labels)  # every patient exactly once
    assert all(int(r["fold"]) == fold_of[r["patient_key"]] for r in oof)
    assert s["pooled"]["n_patients"] == sum(v in ("positive", "negative") for v in labels.values())
    assert len(s["per_fold"]) == 2 and json.loads((out / "crossval.json").read_text())["folds"] == 2

    view = read_cache(out / "folds" / "fold1" / "cache")  # a valid cache: same slices, re-split
    assert [r.slice_id for r in view] == [r.slice_id for r in recs]
    assert all(Path(r.path).is_file() for r in view)
    assert {r.patient_key for r in view if r.split == "test"} == {k for k, f in fold_of.items() if f == 1}
    assert not any(Path(p).suffix == ".npz" for p in (out / "folds").rglob("*"))  # nothing copied
    meta = json.loads((out / "folds" / "fold1" / "cache" / "cache.json").read_text())
    assert meta["crossval"]["fold"] == 1 and meta["split"]["test"] == sum(r.split == "test" for r in view)

    def no_training(*a, **k):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr("lgeclip.train.clip.train_clip", no_training)
    again = cv.crossval(cache, out, recipe="smoke", folds=2, seed=0, val_fraction=0.2, overrides=over)
    assert again["pooled"] == s["pooled"]
