"""The cohort's one patient split (splits.json): stratified, deterministic, a partition per fold, never silently
re-split; the anatomy nets and the cache read the same split of the same cohort."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from _clip_fixtures import make_tiny_cohort

from lgeclip.anatomy.predictor import ViewCfg
from lgeclip.data.anatomy import AnatomyDataCfg, cohort_splits, load_anatomy_slices
from lgeclip.io.cohort import read_manifest, write_manifest
from lgeclip.io.splits import (
    ensure_splits,
    make_splits,
    patient_split,
    read_splits,
    splits_digest,
)
from lgeclip.preprocess.cache import build_cache, read_cache

LABELS = {f"pt-{i:04d}": ("positive" if i < 11 else "negative" if i < 27 else "unknown") for i in range(30)}


def test_make_splits_partition_stratification_determinism():
    s = make_splits(LABELS, n_folds=5, seed=3, val_fraction=0.125)
    assert s["version"] == 1 and s["n_folds"] == 5 and s["stratified_by"] == "report label" and s["default_fold"] == 0
    assert list(s["patients"]) == sorted(LABELS)
    assert {k: v["label"] for k, v in s["patients"].items()} == LABELS
    tested = Counter(k for f in s["folds"] for k in f["test"])
    assert set(tested) == set(LABELS) and set(tested.values()) == {1}  # every patient tested in exactly one fold
    for k, f in enumerate(s["folds"]):
        assert set(f["train"]) | set(f["val"]) | set(f["test"]) == set(LABELS)
        assert not set(f["val"]) & set(f["test"]) and not set(f["train"]) & (set(f["val"]) | set(f["test"]))
        assert all(f[n] == sorted(f[n]) for n in ("train", "val", "test"))
        assert set(f["test"]) == {p for p, v in s["patients"].items() if v["fold"] == k}
        for lab in ("positive", "negative"):  # both report classes validate in every fold
            assert any(LABELS[p] == lab for p in f["val"])
        assert 2 <= len(f["val"]) <= 5  # ~12.5 % of the 24 non-test patients, per label
    for lab in ("positive", "negative", "unknown"):  # each label spread evenly over the folds
        per = Counter(v["fold"] for p, v in s["patients"].items() if v["label"] == lab)
        assert max(per.values()) - min(per.get(k, 0) for k in range(5)) <= 1
    assert make_splits(LABELS, 5, 3, 0.125) == s
    assert make_splits(LABELS, 5, 4, 0.125)["patients"] != s["patients"]
    few = make_splits(dict(list(LABELS.items())[:3]), n_folds=5)  # fewer patients than folds: later folds empty
    assert sum(len(f["test"]) for f in few["folds"]) == 3 and few["folds"][4]["test"] == []
    with pytest.raises(ValueError, match="n_folds"):
        make_splits(LABELS, n_folds=1)


def test_ensure_splits_writes_once_and_refuses_a_changed_manifest(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=8, seed=1)
    assert not (cohort / "splits.json").exists()
    split = patient_split(cohort, fold=2)  # an older cohort without the file gets one
    data = read_splits(cohort)
    recs = read_manifest(cohort)
    assert set(data["patients"]) == {r.patient_key for r in recs}
    assert all(data["patients"][r.patient_key]["label"] == r.label for r in recs)
    assert split == {k: n for n in ("train", "val", "test") for k in data["folds"][2][n]}
    digest, raw = splits_digest(cohort), (cohort / "splits.json").read_bytes()
    assert len(digest) == 16 and ensure_splits(cohort) == data and (cohort / "splits.json").read_bytes() == raw
    with pytest.raises(ValueError, match="n_folds=5, asked for 3"):
        ensure_splits(cohort, n_folds=3)
    with pytest.raises(ValueError, match=r"fold 5 is not in \[0, 5\)"):
        patient_split(cohort, fold=5)

    gone = recs[0].patient_key
    write_manifest(cohort, [r for r in recs if r.patient_key != gone])  # a re-ingest lost a patient
    with pytest.raises(ValueError, match=rf"{cohort.name}.*0 manifest patient\(s\) missing.*1 patient\(s\) in it "
                                         r"not in the manifest.*delete .*splits.json"):
        ensure_splits(cohort)
    renamed = [r for r in recs if r.patient_key != gone]
    renamed[0].patient_key = "pt-new000000000"
    write_manifest(cohort, renamed)
    with pytest.raises(ValueError, match="1 manifest patient"):
        patient_split(cohort, 0)
    assert (cohort / "splits.json").read_bytes() == raw  # never silently re-split
    (cohort / "splits.json").unlink()
    assert set(ensure_splits(cohort)["patients"]) == {r.patient_key for r in renamed}


def test_anatomy_nets_and_cache_read_the_same_split(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=10, seed=2)
    ensure_splits(cohort, n_folds=3, seed=5)
    for fold in (0, 2):
        _, stats = load_anatomy_slices([cohort], False, AnatomyDataCfg(fold=fold), ViewCfg(size=64, pixel_mm=2.0))
        anat = {k: s for s, keys in stats["cohorts"][str(cohort)]["patients"].items() for k in keys}
        assert anat == cohort_splits(cohort, fold) == patient_split(cohort, fold)
        assert stats["cohorts"][str(cohort)]["splits_digest"] == splits_digest(cohort)
        out = tmp_path / f"cache{fold}"
        info = build_cache(cohort, None, None, out, oracle=True, overrides=["crop=64", f"fold={fold}"])
        assert {r.patient_key: r.split for r in read_cache(out)} == anat
        assert info["splits"]["fold"] == fold and info["splits"]["digest"] == splits_digest(cohort)
    assert patient_split(cohort, 0) != patient_split(cohort, 2)
    assert json.loads((tmp_path / "cache2" / "cache.json").read_text())["splits"]["file"] == \
        str((cohort / "splits.json").resolve())
