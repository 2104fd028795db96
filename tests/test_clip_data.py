"""CLIP pairs: captions, synthetic scars on report-negative slices, augmentation, (seed, epoch, index) randomness."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _clip_fixtures import make_tiny_cache
from torch.utils.data import DataLoader

from lgeclip.config import ConfigError, apply_overrides, from_dict
from lgeclip.data.clip import AugmentCfg, ClipPairs, DataCfg, collate_pairs
from lgeclip.preprocess.cache import read_cache
from lgeclip.synth import SynthScarCfg
from lgeclip.synth.templates import level_suffix

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_cache(make_tiny_cache(tmp_path_factory.mktemp("clipdata"), n_patients=8, size=64, seed=3))


def _cfg(**kw) -> DataCfg:
    return DataCfg(**{"image_size": 48, **kw})


def _same(a: dict, b: dict) -> bool:
    return (torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"]
            and a["synthetic"] == b["synthetic"])


def test_item_randomness_depends_only_on_seed_epoch_index(records):
    ds = ClipPairs(records, _cfg(), train=True, seed=5)
    ds.set_epoch(2)
    forward = [ds[i] for i in range(len(ds))]
    other = ClipPairs(records, _cfg(), train=True, seed=5)
    other.set_epoch(2)
    backward = {i: other[i] for i in reversed(range(len(ds)))}
    assert all(_same(forward[i], backward[i]) for i in range(len(ds)))
    assert all(_same(forward[i], ds[i]) for i in range(len(ds)))  # repeatable
    ds.set_epoch(3)
    assert sum(_same(forward[i], ds[i]) for i in range(len(ds))) < len(ds) // 2  # new draws each epoch
    reseeded = ClipPairs(records, _cfg(), train=True, seed=6)
    reseeded.set_epoch(2)
    assert not all(_same(forward[i], reseeded[i]) for i in range(len(ds)))

    # DataLoader workers see the same items (set_epoch before the loader is created, as the loop does)
    loader = DataLoader(ClipPairs(records, _cfg(), train=True, seed=5), batch_size=4, num_workers=2,
                        collate_fn=collate_pairs, worker_init_fn=None)
    loader.dataset.set_epoch(2)
    batches = list(loader)
    assert torch.equal(torch.cat([b["image"] for b in batches]), torch.stack([f["image"] for f in forward]))
    assert sum((b["caption"] for b in batches), []) == [f["caption"] for f in forward]


def test_captions_and_synthetic_scars(records):
    by_id = {r.slice_id: r for r in records}
    ds = ClipPairs(records, _cfg(synth=SynthScarCfg(prob=1.0), augment=AugmentCfg(enabled=False)), train=True)
    n_synth = 0
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            r = by_id[it["slice_id"]]
            assert it["image"].shape == (1, 48, 48) and it["image"].dtype == torch.float32
            assert it["caption"].endswith(level_suffix(r.level))
            assert it["label"] == {"positive": 1, "negative": 0}[r.label]
            if it["synthetic"]:
                n_synth += 1
                assert r.label == "negative"  # only report-negative slices are synthesised
                assert it["caption"] not in [f"{s} {level_suffix(r.level)}" for s in r.sentences]
                base = torch.from_numpy(ds.store.items[i]["image"])[None]
                diff = (it["image"] - base).abs()[0].numpy() > 1e-6
                myo = ds.store.items[i]["myocardium"] > 0
                assert diff.any() and not (diff & ~myo).any()  # the scar lies in the myocardium
                assert float(it["image"][0][diff].mean()) > float(base[0][diff].mean())  # and is bright
            else:
                assert it["caption"] in [f"{s} {level_suffix(r.level)}" for s in r.sentences]
    n_neg = sum(r.label == "negative" for r in ds.records)
    assert n_synth >= 2 * n_neg * 0.8  # prob 1: nearly every negative slice (a few may lack a region)

    for cfg in (_cfg(synth_enabled=False), _cfg(synth=SynthScarCfg(prob=0.0))):
        ds = ClipPairs(records, cfg, train=True)
        assert not any(ds[i]["synthetic"] for i in range(len(ds)))

    # lambda is respected on average
    ds = ClipPairs(records, _cfg(synth=SynthScarCfg(prob=0.5), augment=AugmentCfg(enabled=False)), train=True)
    flags = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        flags += [ds[i]["synthetic"] for i in range(len(ds)) if ds.records[i].label == "negative"]
    assert 0.3 < np.mean(flags) < 0.7


def test_eval_items_are_plain_and_records_filtering(records):
    no_text = [dataclasses.replace(r, sentences=[]) if i % 4 == 0 else r for i, r in enumerate(records)]
    ev = ClipPairs(no_text, _cfg(), train=False)
    assert len(ev) == len(records)
    for i in range(len(ev)):
        assert torch.equal(ev[i]["image"][0], torch.from_numpy(ev.store.items[i]["image"]))
        assert not ev[i]["synthetic"]
    assert len(ClipPairs(no_text, _cfg(), train=True)) == sum(bool(r.sentences) for r in no_text)
    assert len(ClipPairs(no_text, _cfg(), train=True, require_caption=False)) == len(records)

    oriented = ClipPairs(records[:3], _cfg(), train=False)
    native = ClipPairs(records[:3], _cfg(orientation=False), train=False)
    assert not torch.equal(oriented[0]["image"], native[0]["image"])

    aug = ClipPairs(records[:4], _cfg(augment=AugmentCfg(noise_std=0.05)), train=True)
    plain = ClipPairs(records[:4], _cfg(augment=AugmentCfg(enabled=False), synth_enabled=False), train=True)
    a, p = aug[0]["image"], plain[0]["image"]
    assert not torch.equal(a, p) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0

    batch = collate_pairs([ev[i] for i in range(3)])
    assert batch["image"].shape == (3, 1, 48, 48) and batch["label"].dtype == torch.long
    assert len(batch["caption"]) == 3 and batch["synthetic"].dtype == torch.bool


def test_data_config_validation():
    with pytest.raises(ValueError, match="multiple of 16"):
        DataCfg(image_size=40)
    with pytest.raises(ValueError):
        AugmentCfg(gamma=(1.2, 0.8))
    with pytest.raises(ConfigError):
        from_dict(DataCfg, apply_overrides({}, ["synth.lambda=0.5"]))
    assert from_dict(DataCfg, apply_overrides({}, ["synth.prob=0.25"])).synth.prob == 0.25


def test_negative_templates_caption_clean_negatives_only(records):
    from lgeclip.synth.templates import NEGATIVE_TEMPLATES

    base = _cfg(synth=SynthScarCfg(prob=0.5), augment=AugmentCfg(enabled=False))
    plain = ClipPairs(records, base, train=True, seed=1)
    neg = ClipPairs(records, dataclasses.replace(base, negative_template_prob=1.0), train=True, seed=1)
    n_template = 0
    for i in range(len(neg)):
        a, b = plain[i], neg[i]
        r = neg.records[i]
        report = [f"{s} {level_suffix(r.level)}" for s in r.sentences]
        assert a["synthetic"] == b["synthetic"] and torch.equal(a["image"], b["image"])  # same draws up to there
        if r.label == "negative" and not b["synthetic"]:
            n_template += 1
            assert b["caption"] not in report and b["caption"].endswith(level_suffix(r.level))
            assert " no " in f" {b['caption'].lower()} "
            assert any(t.split("{enh}")[0].strip().lower() in b["caption"].lower() for t in NEGATIVE_TEMPLATES)
        else:
            assert b["caption"] == a["caption"]  # positives and synthetic scars keep their captions
    assert n_template > 0
    with pytest.raises(ValueError, match="negative_template_prob"):
        _cfg(negative_template_prob=1.5)


def test_language_augmentation_rewords_captions_and_keeps_their_status(records):
    from lgeclip.report.lge import sentence_status
    from lgeclip.synth.templates import split_level_suffix

    base = _cfg(synth=SynthScarCfg(prob=0.5), augment=AugmentCfg(enabled=False))
    plain = ClipPairs(records, base, train=True, seed=1)
    aug = ClipPairs(records, dataclasses.replace(base, language_aug_prob=1.0), train=True, seed=1)
    changed = 0
    for epoch in range(3):
        plain.set_epoch(epoch)
        aug.set_epoch(epoch)
        for i in range(len(aug)):
            a, b = plain[i], aug[i]
            assert a["synthetic"] == b["synthetic"] and torch.equal(a["image"], b["image"])  # drawn after the image
            body_a, suffix_a = split_level_suffix(a["caption"])
            body_b, suffix_b = split_level_suffix(b["caption"])
            assert suffix_b == suffix_a == level_suffix(aug.records[i].level)
            assert sentence_status(body_b) == sentence_status(body_a)
            changed += body_a.strip() != body_b.strip()
    assert changed > 0
    with pytest.raises(ValueError, match="language_aug_prob"):
        _cfg(language_aug_prob=-0.1)
