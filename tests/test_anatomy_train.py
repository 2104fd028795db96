"""Anatomy-net training: recipes, samples, tiny runs that learn, run folders that rebuild the predictor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from monai.networks.nets import DenseNet121

from lgeclip.anatomy.predictor import AnatomyPredictor, ViewCfg
from lgeclip.anatomy.types import AnatomyResult
from lgeclip.config import load_config
from lgeclip.data.anatomy import (
    AnatomyAugCfg,
    AnatomyDataCfg,
    LandmarkDataset,
    SegmentationDataset,
    load_anatomy_slices,
    write_ring_cohort,
)
from lgeclip.io.cohort import load_slice
from lgeclip.io.splits import patient_split, splits_digest
from lgeclip.train.anatomy import LandmarkTrainCfg, SegTrainCfg, train_landmarks, train_segmentation
from lgeclip.utils import config_dir, load_tensors

torch.set_num_threads(1)
RECIPES = config_dir("anatomy")


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_recipes_load(name):
    cls = SegTrainCfg if name.startswith("seg") else LandmarkTrainCfg
    cfg = load_config(cls, RECIPES / name)
    assert cfg.view.size % 32 == 0
    if name in ("seg.yaml", "landmarks.yaml"):  # the recipe files and the dataclass defaults agree
        assert cfg == cls()


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("anatomy")
    with_rvip = write_ring_cohort(root / "rings", n_patients=10, slices_per_patient=2, seed=7)
    no_rvip = write_ring_cohort(root / "emidec_like", n_patients=4, slices_per_patient=2, seed=8, with_rvip=False)
    return root, with_rvip, no_rvip


def test_samples_deterministic_and_flips_keep_names(cohorts):
    _, rings, _ = cohorts
    view = ViewCfg(size=64, pixel_mm=2.0)
    slices, stats = load_anatomy_slices([rings], True, AnatomyDataCfg(), view)
    assert stats["n_slices"] == 20 and len(slices) == 20
    ds = LandmarkDataset(slices, view, AnatomyAugCfg(), train=True, seed=3)
    a, b = ds[5], ds[5]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["points"], b["points"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["image"], a["image"])
    s = slices[0]
    assert s.rvip[0, 0] < s.rvip[1, 0]  # the anterior RVIP is the upper one in the native image
    plain = dict(jitter_mm=0.0, rotate_deg=0.0, zoom=(1.0, 1.0), noise_std=0.0)
    for flip_lr, flip_ud in ((1.0, 0.0), (0.0, 1.0)):
        item = LandmarkDataset([s], view, AnatomyAugCfg(flip_lr_prob=flip_lr, flip_ud_prob=flip_ud, **plain),
                               train=True)[0]
        pts = item["points"].numpy()
        mid = (view.size - 1) / 2
        expect = (s.rvip - np.asarray(s.center)) * np.asarray(s.spacing) / view.pixel_mm
        expect = expect * np.array([-1.0 if flip_ud else 1.0, -1.0 if flip_lr else 1.0]) + mid
        np.testing.assert_allclose(pts, expect, atol=1e-4)  # point 0 stays the anterior RVIP, it only moves
    seg = SegmentationDataset(slices, view, AnatomyAugCfg(), train=False)[0]
    assert seg["image"].shape == (1, 64, 64) and seg["label"].dtype == torch.int64
    area_mm2 = (seg["label"] == 2).sum().item() * view.pixel_mm**2
    truth_mm2 = (s.labels == 2).sum() * s.spacing[0] * s.spacing[1]
    assert abs(area_mm2 - truth_mm2) / truth_mm2 < 0.15


def test_flips_swap_names_when_names_follow_handedness(cohorts):
    _, rings, _ = cohorts
    view = ViewCfg(size=64, pixel_mm=2.0)
    s = load_anatomy_slices([rings], True, AnatomyDataCfg(), view)[0][0]
    plain = dict(jitter_mm=0.0, rotate_deg=0.0, zoom=(1.0, 1.0), noise_std=0.0, flip_swaps_rvip=True)
    mid = (view.size - 1) / 2
    base = (s.rvip - np.asarray(s.center)) * np.asarray(s.spacing) / view.pixel_mm
    for flip_lr, flip_ud in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        pts = LandmarkDataset([s], view, AnatomyAugCfg(flip_lr_prob=flip_lr, flip_ud_prob=flip_ud, **plain),
                              train=True)[0]["points"].numpy()
        moved = base * np.array([-1.0 if flip_ud else 1.0, -1.0 if flip_lr else 1.0]) + mid
        want = moved[::-1] if flip_lr + flip_ud == 1 else moved  # a rotation (both flips) keeps the names
        np.testing.assert_allclose(pts, want, atol=1e-4)
        # in the view, channel 0 is still the clockwise end of the RV arc: the handedness rule of lgeclip.io.acdc
        from lgeclip.io.acdc import name_rvips

        np.testing.assert_allclose(name_rvips(pts[::-1], (mid, mid), 1.0), pts, atol=1e-4)


def test_appearance_randomisation_follows_the_labels():
    from lgeclip.data.anatomy import AppearanceCfg, randomise_appearance

    rng = np.random.default_rng(0)
    lab = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    d = np.hypot(yy - 32, xx - 32)
    lab[d < 18], lab[d < 12] = 2, 1
    lab[(np.hypot(yy - 32, xx - 8) < 9) & (d >= 19)] = 3
    img = rng.uniform(0.3, 0.5, lab.shape).astype(np.float32)  # no contrast at all between the regions
    cfg = AppearanceCfg(prob=1.0, myo_null_prob=1.0, patch_prob=0.0, bias=0.0, blur_px=0.0, invert_prob=0.0,
                        texture=(0.0, 0.0))
    out = randomise_appearance(img, lab, 1.0, cfg, np.random.default_rng(1))
    inner = lambda c: out[(lab == c) & (np.abs(d - {1: 5, 2: 15, 3: 30}[c]) < 3)]  # noqa: E731  (away from edges)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert inner(1).mean() >= 0.55 and inner(2).mean() <= 0.16 and abs(inner(3).mean() - inner(1).mean()) <= 0.11
    # patches brighten the wall only; inversion flips the contrast
    cfg2 = AppearanceCfg(prob=1.0, myo_null_prob=1.0, patch_prob=1.0, patch_max=3, bias=0.0, blur_px=0.0,
                         invert_prob=0.0, texture=(0.0, 0.0))
    out2 = randomise_appearance(img, lab, 1.0, cfg2, np.random.default_rng(1))  # same draws up to the patches
    assert (out2 - out)[lab == 2].max() > 0.2 and np.abs(out2 - out)[d < 9].max() < 1e-3
    inv = randomise_appearance(img, lab, 1.0, AppearanceCfg(prob=1.0, invert_prob=1.0, myo_null_prob=1.0, bias=0.0,
                                                             blur_px=0.0, patch_prob=0.0, texture=(0.0, 0.0)),
                               np.random.default_rng(0))
    assert inv[d < 9].mean() < inv[np.abs(d - 15) < 2].mean()  # dark blood, bright wall


def test_painted_scar_is_bright_wall_in_the_chosen_layer():
    from lgeclip.data.anatomy import ScarPaintCfg, paint_scar

    lab = np.zeros((80, 80), np.uint8)
    yy, xx = np.mgrid[0:80, 0:80]
    d = np.hypot(yy - 40, xx - 40)
    lab[d < 24], lab[d < 14] = 2, 1  # wall 10 px thick
    img = np.where(lab == 1, 0.8, np.where(lab == 2, 0.1, 0.4)).astype(np.float32)
    endo, epi = (lab == 2) & (d < 15.5), (lab == 2) & (d > 22.5)
    for pattern, painted_layer, spared_layer in ((0, endo, epi), (3, epi, endo)):
        w = [0.0] * 4
        w[pattern] = 1.0
        cfg = ScarPaintCfg(prob=1.0, sector_deg=(120.0, 120.0), patterns=tuple(w), depth=(0.4, 0.4), level=(1.0, 1.0),
                           smooth_px=0.5)
        for seed in range(5):
            out = paint_scar(img, lab, cfg, np.random.default_rng(seed))
            changed = np.abs(out - img) > 0.05
            assert not changed[lab != 2].any()  # only the wall is painted
            assert 0.25 * painted_layer.sum() < (changed & painted_layer).sum() < 0.45 * painted_layer.sum()  # 1/3
            assert out[changed & painted_layer].mean() > 0.6  # as bright as the blood pool
            # 40 % of the wall from the endocardium spares the epicardium; 20 % from the epicardium the endocardium
            assert not (changed & spared_layer).any()
    assert np.array_equal(paint_scar(img, np.zeros_like(lab), cfg, np.random.default_rng(0)), img)  # no wall


def test_anisotropy_stretches_the_view(cohorts):
    _, rings, _ = cohorts
    view = ViewCfg(size=64, pixel_mm=2.0)
    s = load_anatomy_slices([rings], False, AnatomyDataCfg(), view)[0][0]
    plain = dict(jitter_mm=0.0, rotate_deg=0.0, zoom=(1.0, 1.0), noise_std=0.0, flip_lr_prob=0.0, flip_ud_prob=0.0,
                 whole_image_prob=0.0)
    extents = []
    for seed in range(6):
        lab = SegmentationDataset([s], view, AnatomyAugCfg(anisotropy=0.3, **plain), train=True,
                                  seed=seed)[0]["label"][0].numpy()
        rr, cc = np.nonzero(lab > 0)
        extents.append((rr.max() - rr.min()) / (cc.max() - cc.min()))
    assert max(extents) / min(extents) > 1.2  # the LV's height/width ratio varies: the heart was stretched


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def runs(cohorts):
    root, rings, no_rvip = cohorts
    seg = train_segmentation([rings, no_rvip], root / "seg", config=RECIPES / "seg_smoke.yaml")
    lm = train_landmarks([rings, no_rvip], root / "lm", config=RECIPES / "landmarks_smoke.yaml",
                         overrides=["loop.max_steps=12", "loop.epochs=4"])
    return root, seg, lm


def test_segmentation_run_learns_and_writes_folder(runs):
    root, seg, _ = runs
    run = root / "seg"
    for name in ("config.yaml", "model.safetensors", "metrics.csv", "encoder.safetensors", "split.json"):
        assert (run / name).is_file(), name
    losses = _losses(run)
    assert len(losses) >= 2 and losses[-1] < losses[0]
    enc = load_tensors(run / "encoder.safetensors")
    assert sorted(enc) == sorted(DenseNet121(spatial_dims=2, in_channels=1, out_channels=1).features.state_dict())
    model = load_tensors(run / "model.safetensors")
    assert torch.equal(enc["conv0.weight"], model["encoder.conv0.weight"])
    split = json.loads((run / "split.json").read_text())
    assert split["fold"] == 0 and split["train_splits"] == ["train"] and len(split["cohorts"]) == 2
    for c in (root / "rings", root / "emidec_like"):  # fold 0 of each cohort's splits.json, with its digest
        rec = split["cohorts"][str(c)]
        assert rec["splits_digest"] == splits_digest(c) and rec["cohort_dir"] == str(c.resolve())
        assert rec["patients"] == {s: sorted(k for k, v in patient_split(c, 0).items() if v == s)
                                   for s in ("train", "val", "test")}
    assert seg["skipped"][str(root / "emidec_like")]["no_rvip"] == 0  # the seg net uses slices without RVIPs


def test_landmark_run_learns_and_counts_skips(runs):
    root, _, lm = runs
    losses = _losses(root / "lm")
    assert len(losses) >= 2 and losses[-1] < losses[0]
    skipped = lm["skipped"][str(root / "emidec_like")]
    split = json.loads((root / "lm" / "split.json").read_text())["cohorts"][str(root / "emidec_like")]
    n_trainval = 2 * (len(split["patients"]["train"]) + len(split["patients"]["val"]))
    assert skipped["no_rvip"] == n_trainval > 0
    cfg = yaml.safe_load((root / "lm" / "config.yaml").read_text())
    assert cfg["task"]["net"]["loss"] == "softmax_ce" and cfg["task"]["view"]["size"] == 64


def test_run_folders_rebuild_the_predictor(runs, cohorts):
    root, _, _ = runs
    pred = AnatomyPredictor.from_run_dirs(root / "seg", root / "lm", device="cpu")
    weights = load_tensors(root / "seg" / "model.safetensors")
    for k, v in pred.seg_net.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert pred.seg_view.size == 64 and pred.lm_view.pixel_mm == 2.0
    arr = load_slice(next((cohorts[1] / "slices").glob("*/*.npz")))
    out = pred.predict_batch([(arr["image"], arr["spacing_mm"])], errors="none")  # barely trained: may find no LV
    assert out[0] is None or (isinstance(out[0], AnatomyResult) and out[0].shape == arr["image"].shape)
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        AnatomyPredictor.from_run_dirs(root, root / "lm")


def test_no_usable_slices_is_an_error(cohorts, tmp_path):
    _, _, no_rvip = cohorts
    with pytest.raises(ValueError, match="no usable training slice"):
        train_landmarks([no_rvip], tmp_path / "lm", config=RECIPES / "landmarks_smoke.yaml")


def test_cohort_weighting_and_fine_tuning_from_a_run(runs, cohorts, tmp_path):
    """cohort_repeats multiplies one cohort's training slices; init_run starts from an earlier run's weights."""
    from lgeclip.train.anatomy import LandmarkTask, SegmentationTask

    root, rings, no_rvip = cohorts
    base = load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml")
    plain = SegmentationTask(base, [rings, no_rvip])
    weighted = SegmentationTask(load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml",
                                            ["data.cohort_repeats=[1, 3]"]), [rings, no_rvip])
    per = {c: sum(s.cohort == str(c) for s in plain.train_slices) for c in (rings, no_rvip)}
    assert all(per.values())
    assert [sum(s.cohort == str(c) for s in weighted.train_slices) for c in (rings, no_rvip)] == \
        [per[rings], 3 * per[no_rvip]]
    with pytest.raises(ValueError, match="cohort_repeats"):
        SegmentationTask(load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml", ["data.cohort_repeats=[2]"]),
                         [rings, no_rvip])

    tuned = SegmentationTask(load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml",
                                         [f"init_run={root / 'seg'}"]), [rings]).build_model()
    trained = load_tensors(root / "seg" / "model.safetensors")
    assert all(torch.equal(v, trained[k]) for k, v in tuned.state_dict().items())
    fresh = plain.build_model()
    assert not torch.equal(fresh.state_dict()["encoder.conv0.weight"], trained["encoder.conv0.weight"])
    with pytest.raises(FileNotFoundError, match="init_run"):
        SegmentationTask(load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml", [f"init_run={tmp_path}"]),
                         [rings]).build_model()
    # a decoder with an extra full-resolution stage: shared tensors come from the run, the new stage and head do not
    deeper = SegmentationTask(load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml",
                                          [f"init_run={root / 'seg'}", "net.decoder_channels=[128, 64, 32, 32, 16]"]),
                              [rings]).build_model().state_dict()
    assert torch.equal(deeper["encoder.conv0.weight"], trained["encoder.conv0.weight"])
    assert torch.equal(deeper["decoder.blocks.0.0.weight"], trained["decoder.blocks.0.0.weight"])
    assert "decoder.final.0.weight" not in trained and "decoder.final.0.weight" in deeper
    assert deeper["decoder.head.weight"].shape[1] == 16 != trained["decoder.head.weight"].shape[1]
    with pytest.raises(ValueError, match="tensors match"):
        LandmarkTask(load_config(LandmarkTrainCfg, RECIPES / "landmarks_smoke.yaml", [f"init_run={root / 'seg'}"]),
                     [rings]).build_model()


def test_partial_rv_loss_never_teaches_an_unlabelled_rv_as_background():
    """Hand-computed cross-entropy: a pixel marked "background or RV" costs -log(p_bg + p_rv); a labelled
    background pixel costs -log(p_bg). Logits that say "RV" are therefore cheap only where the RV is unlabelled."""
    from lgeclip.data.anatomy import RV_UNKNOWN
    from lgeclip.train.anatomy import partial_rv_dice_ce

    logits = torch.tensor([0.0, -2.0, -2.0, 3.0]).view(1, 4, 1, 1).repeat(1, 1, 2, 2)  # every pixel: "RV"
    p = torch.softmax(logits[0, :, 0, 0], 0)
    for lab, ce in ((RV_UNKNOWN, -torch.log(p[0] + p[3])), (0, -torch.log(p[0]))):
        label = torch.full((1, 1, 2, 2), lab, dtype=torch.int64)
        label[0, 0, 0, 0] = 2  # one myocardium pixel: the Dice terms are the same in both cases
        got = partial_rv_dice_ce(logits, label)
        ce_all = (3 * ce - torch.log(p[2])) / 4
        p_myo, p_blood = p[2] * 4, p[1] * 4
        dice_myo = (2 * p[2] + 1e-5) / (p_myo + 1 + 1e-5)
        dice_blood = 1e-5 / (p_blood + 1e-5)
        if lab == RV_UNKNOWN:
            dice = (dice_myo + dice_blood) / 2
        else:  # labelled slice: background (3 pixels) and RV (none) count too
            dice_bg = (2 * 3 * p[0] + 1e-5) / (4 * p[0] + 3 + 1e-5)
            dice_rv = 1e-5 / (4 * p[3] + 1e-5)
            dice = (dice_myo + dice_blood + dice_bg + dice_rv) / 4
        torch.testing.assert_close(got, ce_all + 1 - dice, rtol=1e-4, atol=1e-5)
    assert partial_rv_dice_ce(logits, torch.full((1, 1, 2, 2), RV_UNKNOWN)) < \
        partial_rv_dice_ce(logits, torch.zeros((1, 1, 2, 2), dtype=torch.int64))


def test_rv_class_run_learns_from_cohorts_with_and_without_rv(runs, cohorts, tmp_path):
    """net.rv_class: RV targets where the cohort labels it, "background or RV" elsewhere; the run folder rebuilds a
    4-class predictor whose results carry an RV mask."""
    from lgeclip.data.anatomy import RV_UNKNOWN, SegmentationDataset
    from lgeclip.train.anatomy import SegmentationTask

    root, rings, _ = cohorts
    no_rv = write_ring_cohort(tmp_path / "no_rv", n_patients=4, slices_per_patient=2, seed=9, with_rv=False)
    cfg = load_config(SegTrainCfg, RECIPES / "seg_smoke.yaml", ["net.rv_class=true"])
    task = SegmentationTask(cfg, [rings, no_rv])
    ds = SegmentationDataset(task.train_slices, cfg.view, cfg.aug, train=False, rv_class=True)
    by_cohort = {}
    for i, sl in enumerate(task.train_slices):
        by_cohort.setdefault(sl.cohort, set()).update(np.unique(ds[i]["label"].numpy()).tolist())
    assert by_cohort[str(rings)] == {0, 1, 2, 3}
    assert by_cohort[str(no_rv)] == {1, 2, RV_UNKNOWN}
    summary = train_segmentation([rings, no_rv], tmp_path / "seg_rv", config=RECIPES / "seg_smoke.yaml",
                                 overrides=["net.rv_class=true"])
    losses = _losses(tmp_path / "seg_rv")
    assert len(losses) >= 2 and losses[-1] < losses[0] and summary["steps"] > 0
    with open(tmp_path / "seg_rv" / "metrics.csv", newline="") as f:
        assert "val_dice_rv" in next(csv.DictReader(f))
    pred = AnatomyPredictor.from_run_dirs(tmp_path / "seg_rv", root / "lm", device="cpu")
    assert pred.seg_cfg.rv_class and pred.seg_net.out_channels == 4
    arr = load_slice(next((rings / "slices").glob("*/*.npz")))
    out = pred.predict_batch([(arr["image"], arr["spacing_mm"])], errors="none")[0]
    assert out is None or (out.rv is not None and out.rv.shape == arr["image"].shape)
