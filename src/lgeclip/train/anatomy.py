"""Training of the anatomy nets: myocardium segmentation (DenseNet121-UNet) and RVIP heatmaps (ResNet18-UNet).

``train_segmentation`` / ``train_landmarks`` build a task for :func:`lgeclip.train.loop.fit` from cohort folders
(manifest + slice npz with truth) and write a run folder that alone rebuilds the net: ``config.yaml`` (its
``task`` section holds ``net`` and ``view``), ``model.safetensors``, ``metrics.csv``, ``split.json`` (the fold,
the splits used for training / selection and, per cohort, its folder, ``splits.json`` digest, patients per split
and slice counts; what ``lgeclip.eval.leaks`` checks) and, for segmentation, ``encoder.safetensors`` (keys of
``DenseNet121(...).features.state_dict()``, the CLIP vision tower's initialisation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lgeclip.anatomy.nets import ENCODER_FORMAT, build_landmark_net, build_seg_net, decode_heatmaps, gaussian_heatmaps
from lgeclip.anatomy.predictor import LandmarkNetCfg, SegNetCfg, ViewCfg
from lgeclip.config import load_config, to_dict
from lgeclip.data.anatomy import (
    RV_UNKNOWN,
    AnatomyAugCfg,
    AnatomyDataCfg,
    LandmarkDataset,
    SegmentationDataset,
    load_anatomy_slices,
    spaced_subset,
)
from lgeclip.train.loop import LoopCfg, fit
from lgeclip.train.task import Task, to_device
from lgeclip.utils import atomic_write_json, get_logger, load_tensors, save_tensors


def _seg_loop() -> LoopCfg:
    return LoopCfg(epochs=8, batch_size=16, lr=1e-3, weight_decay=1e-4, warmup_steps=20, bf16=True,
                   channels_last=True, monitor="val_dice_myo", monitor_mode="max", max_steps=260, log_every=20)


def _landmark_loop() -> LoopCfg:
    return LoopCfg(epochs=12, batch_size=16, lr=1e-3, weight_decay=1e-4, warmup_steps=20, bf16=True,
                   channels_last=True, monitor="val_rvip_mm_median", monitor_mode="min", max_steps=300, log_every=20)


@dataclass
class SegTrainCfg:
    """Segmentation net training (defaults = the CPU recipe ``configs/anatomy/seg.yaml``)."""

    net: SegNetCfg = field(default_factory=SegNetCfg)
    view: ViewCfg = field(default_factory=ViewCfg)
    aug: AnatomyAugCfg = field(default_factory=lambda: AnatomyAugCfg(flip_ud_prob=0.5))
    data: AnatomyDataCfg = field(default_factory=lambda: AnatomyDataCfg(repeats=2))
    loop: LoopCfg = field(default_factory=_seg_loop)
    init_run: str | None = None  # start from this segmentation run's weights (fine-tuning; matching tensors)


@dataclass
class LandmarkTrainCfg:
    """RVIP heatmap net training (defaults = ``configs/anatomy/landmarks.yaml``).

    Default augmentation keeps "anterior is up" (rotation within +-30 deg, left-right flips only): flips remove
    the handedness cue, so the up/down position is what tells the anterior from the inferior RVIP."""

    net: LandmarkNetCfg = field(default_factory=LandmarkNetCfg)
    view: ViewCfg = field(default_factory=ViewCfg)
    aug: AnatomyAugCfg = field(default_factory=lambda: AnatomyAugCfg(rotate_deg=30.0, whole_image_prob=0.0))
    data: AnatomyDataCfg = field(default_factory=lambda: AnatomyDataCfg(repeats=4))
    loop: LoopCfg = field(default_factory=_landmark_loop)
    init_run: str | None = None  # start from this landmark run's weights (fine-tuning; matching tensors)


def _task_dict(cfg) -> dict:
    return {**{k: to_dict(getattr(cfg, k)) for k in ("net", "view", "aug", "data")}, "init_run": cfg.init_run}


def weight_by_cohort(slices: list, cohorts: list[Path], cohort_repeats: list[int]) -> list:
    """``slices`` with each slice listed ``cohort_repeats[i]`` times for the i-th cohort (empty list: unchanged)."""
    if not cohort_repeats:
        return slices
    if len(cohort_repeats) != len(cohorts):
        raise ValueError(f"data.cohort_repeats has {len(cohort_repeats)} entries for {len(cohorts)} cohorts")
    w = {str(c): int(r) for c, r in zip(cohorts, cohort_repeats, strict=True)}
    return [s for s in slices for _ in range(w[s.cohort])]


class _AnatomyTask(Task):
    need_rvip = False

    def __init__(self, cfg, cohorts: list[Path]) -> None:
        self.cfg, self.cohorts = cfg, [Path(c) for c in cohorts]
        d = cfg.data
        self.train_slices, self.stats = load_anatomy_slices(self.cohorts, self.need_rvip, d, cfg.view,
                                                            splits=tuple(d.train_splits))
        self.val_slices, vstats = load_anatomy_slices(self.cohorts, self.need_rvip, d, cfg.view,
                                                      splits=(d.val_split,))
        self.val_slices = spaced_subset(self.val_slices, d.max_val_slices)
        for c, s in vstats["cohorts"].items():  # counts over train + val slices
            for k in ("used", "no_masks", "empty_lv", "no_rvip"):
                self.stats["cohorts"][c][k] += s[k]
        self.stats["n_train_slices"], self.stats["n_val_slices"] = len(self.train_slices), len(self.val_slices)
        self.train_slices = weight_by_cohort(self.train_slices, self.cohorts, list(d.cohort_repeats))
        if not self.train_slices:
            raise ValueError(f"{self.name}: no usable training slice in {[str(c) for c in self.cohorts]} "
                             f"(skipped: {self._skips()})")

    def init_weights(self, model: nn.Module) -> nn.Module:
        """Load ``cfg.init_run``'s weights (fine-tuning); a resumed run then overwrites them from its checkpoint.

        Tensors whose name and shape match are loaded; the others (e.g. a decoder that gained a full-resolution
        stage) start fresh and are logged. Fewer than half of the model's tensors matching is an error."""
        if self.cfg.init_run:
            path = Path(self.cfg.init_run) / "model.safetensors"
            if not path.is_file():
                raise FileNotFoundError(f"init_run {self.cfg.init_run}: no model.safetensors")
            own, src = model.state_dict(), load_tensors(path)
            match = {k: v for k, v in src.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
            if len(match) < len(own) / 2:
                raise ValueError(f"init_run {self.cfg.init_run}: only {len(match)} of {len(own)} tensors match this "
                                 f"{self.name} net (a different architecture?)")
            model.load_state_dict(match, strict=False)
            fresh = sorted(set(own) - set(match))
            msg = f"{self.name}: weights initialised from {self.cfg.init_run}"
            if fresh:
                msg += f"; {len(fresh)} tensors start fresh (no match): {fresh[:6]}{' ...' if len(fresh) > 6 else ''}"
            get_logger("lgeclip.train").info(msg)
        return model

    def _skips(self) -> dict:
        return {c: {k: s[k] for k in ("no_masks", "empty_lv", "no_rvip")} for c, s in self.stats["cohorts"].items()}

    def config_dict(self) -> dict:
        return _task_dict(self.cfg)

    def param_groups(self, model: nn.Module) -> list:
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _batches(self, dataset, device: torch.device, bs: int = 32):
        for i in range(0, len(dataset), bs):
            items = [dataset[j] for j in range(i, min(i + bs, len(dataset)))]
            yield to_device(self.collate(items), device)


def partial_rv_dice_ce(logits: torch.Tensor, label: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Dice + cross-entropy for the 4-class net (background, blood pool, myocardium, RV cavity) on targets where
    ``RV_UNKNOWN`` marks "background or RV" (cohorts without an RV label).

    Cross-entropy of such a pixel is that of the merged class (log(p_bg + p_rv)), so an unlabelled RV is never
    taught as background; soft Dice (per sample) covers blood pool and myocardium on every slice and background
    and RV only on slices that label the RV. logits (B, 4, H, W), label (B, 1, H, W) int64 in 0..4."""
    logp = F.log_softmax(logits.float(), dim=1)  # (B, 4, H, W)
    y = label[:, 0]
    unknown = y == RV_UNKNOWN
    own = logp.gather(1, y.clamp(max=3)[:, None])[:, 0]
    merged = torch.logsumexp(logp[:, [0, 3]], dim=1)
    ce = -torch.where(unknown, merged, own).mean()
    p = logp.exp()
    onehot = F.one_hot(y.clamp(max=3), 4).permute(0, 3, 1, 2).float()  # (B, 4, H, W); unknown pixels -> RV
    onehot[:, 3] = onehot[:, 3] * (~unknown)
    inter = (p * onehot).flatten(2).sum(-1)  # (B, 4)
    denom = (p + onehot).flatten(2).sum(-1)
    dice = (2 * inter + smooth) / (denom + smooth)  # (B, 4)
    labelled = ~unknown.flatten(1).any(1)  # (B,) the slice labels its RV
    weight = torch.ones_like(dice)
    weight[:, [0, 3]] = labelled[:, None].float()
    return ce + 1.0 - (dice * weight).sum() / weight.sum()


class SegmentationTask(_AnatomyTask):
    """Dice + cross-entropy on 3 classes (background, blood pool, myocardium), or 4 with ``net.rv_class`` (the RV
    cavity, learned where a cohort labels it: :func:`partial_rv_dice_ce`)."""

    name = "anatomy_seg"

    def __init__(self, cfg: SegTrainCfg, cohorts: list[Path]) -> None:
        super().__init__(cfg, cohorts)
        from monai.losses import DiceCELoss

        self.rv_class = bool(cfg.net.rv_class)
        self.loss_fn = partial_rv_dice_ce if self.rv_class else DiceCELoss(to_onehot_y=True, softmax=True)

    def build_model(self) -> nn.Module:
        return self.init_weights(build_seg_net(self.cfg.net.decoder_channels, rv_class=self.rv_class))

    def train_dataset(self) -> SegmentationDataset:
        return SegmentationDataset(self.train_slices, self.cfg.view, self.cfg.aug, train=True,
                                   seed=self.cfg.loop.seed, repeats=self.cfg.data.repeats, rv_class=self.rv_class)

    def val_dataset(self) -> SegmentationDataset | None:
        if not self.val_slices:
            return None
        return SegmentationDataset(self.val_slices, self.cfg.view, self.cfg.aug, train=False, rv_class=self.rv_class)

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])  # (B, 3 or 4, S, S)
        return {"loss": self.loss_fn(logits.float(), batch["label"])}

    def validate(self, model: nn.Module, dataset, device: torch.device) -> dict[str, float]:
        dice = {"myo": [], "blood": [], "rv": []}
        losses = []
        for batch in self._batches(dataset, device):
            logits = model(batch["image"]).float()
            losses.append(float(self.loss_fn(logits, batch["label"])) * len(logits))
            pred, lab = logits.argmax(1), batch["label"][:, 0]
            labelled_rv = ~(lab == RV_UNKNOWN).flatten(1).any(1)
            for c, key in ((2, "myo"), (1, "blood"), (3, "rv")):
                if c == 3 and not self.rv_class:
                    continue
                p, t = pred == c, lab == c
                inter = (p & t).flatten(1).sum(1).float()
                denom = (p.flatten(1).sum(1) + t.flatten(1).sum(1)).float()
                d = 2 * inter / denom.clamp_min(1)
                if c == 3:  # slices that label an RV cavity (an empty truth + empty prediction says nothing)
                    d = d[labelled_rv & (t.flatten(1).sum(1) > 0)]
                dice[key].extend(d.tolist())
        out = {"loss": sum(losses) / len(dataset), "dice_myo": float(np.mean(dice["myo"])),
               "dice_blood": float(np.mean(dice["blood"]))}
        if self.rv_class:
            out["dice_rv"] = float(np.mean(dice["rv"])) if dice["rv"] else float("nan")
        return out


def heatmap_loss(logits: torch.Tensor, points: torch.Tensor, valid: torch.Tensor, cfg: LandmarkNetCfg) -> torch.Tensor:
    """Heatmap loss for logits (B, K, H, W), target points (B, K, 2) and validity (B, K).

    ``softmax_ce``: cross-entropy between a spatial softmax of the logits and the normalised Gaussian target;
    ``mse``: ``mse_scale`` x MSE between the raw output and the Gaussian (peak 1)."""
    b, k, h, w = logits.shape
    target = gaussian_heatmaps(points, (h, w), cfg.sigma_px)  # (B, K, H, W)
    logits = logits.float()
    if cfg.loss == "softmax_ce":
        t = target.flatten(2)
        t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
        per = -(t * F.log_softmax(logits.flatten(2), dim=-1)).sum(-1)  # (B, K)
    else:
        per = cfg.mse_scale * ((logits - target) ** 2).flatten(2).mean(-1)
    return (per * valid).sum() / valid.sum().clamp_min(1.0)


class LandmarkTask(_AnatomyTask):
    """Anterior / inferior RVIP heatmaps (slices without RVIP truth are skipped and counted)."""

    name = "anatomy_landmarks"
    need_rvip = True

    def build_model(self) -> nn.Module:
        return self.init_weights(build_landmark_net(self.cfg.net.decoder_channels))

    def train_dataset(self) -> LandmarkDataset:
        return LandmarkDataset(self.train_slices, self.cfg.view, self.cfg.aug, train=True, seed=self.cfg.loop.seed,
                               repeats=self.cfg.data.repeats)

    def val_dataset(self) -> LandmarkDataset | None:
        if not self.val_slices:
            return None
        return LandmarkDataset(self.val_slices, self.cfg.view, self.cfg.aug, train=False)

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])  # (B, 2, S, S)
        return {"loss": heatmap_loss(logits, batch["points"], batch["valid"], self.cfg.net)}

    def validate(self, model: nn.Module, dataset, device: torch.device) -> dict[str, float]:
        errs, losses = [], []
        for batch in self._batches(dataset, device):
            logits = model(batch["image"]).float()
            losses.append(float(heatmap_loss(logits, batch["points"], batch["valid"], self.cfg.net)) * len(logits))
            if self.cfg.net.loss == "softmax_ce":
                pts = decode_heatmaps(logits, log_input=True)
            else:
                pts = decode_heatmaps(logits.clamp_min(1e-6))
            d = torch.linalg.norm(pts - batch["points"], dim=-1) * self.cfg.view.pixel_mm  # (B, K) mm
            errs.extend(d[batch["valid"] > 0].tolist())
        e = np.asarray(errs) if errs else np.asarray([np.nan])
        return {"loss": sum(losses) / len(dataset), "rvip_mm_median": float(np.median(e)),
                "rvip_mm_p90": float(np.percentile(e, 90))}


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _run(task: _AnatomyTask, cfg, out: Path, resume: bool) -> dict:
    out = Path(out)
    log = get_logger("lgeclip.train")
    log.info(f"{task.name}: {task.stats['n_train_slices']} train / {task.stats['n_val_slices']} val slices; "
             f"skipped per cohort: {task._skips()}")
    summary = fit(task, cfg.loop, out, resume=resume)
    if _is_main():
        atomic_write_json(out / "split.json", {"fold": cfg.data.fold, "train_splits": list(cfg.data.train_splits),
                                               "val_split": cfg.data.val_split, "cohorts": task.stats["cohorts"]})
    summary.update(n_train_slices=task.stats["n_train_slices"], n_val_slices=task.stats["n_val_slices"],
                   skipped=task._skips())
    return summary


def train_segmentation(cohorts: list[Path], out: Path, config: Path | None = None, overrides: list[str] | None = None,
                       resume: bool = False) -> dict:
    """Train the myocardium / blood-pool net on cohorts with truth masks; writes the run folder (see module doc)."""
    cfg = load_config(SegTrainCfg, config, overrides)
    task = SegmentationTask(cfg, list(cohorts))
    summary = _run(task, cfg, out, resume)
    if _is_main():
        net = build_seg_net(cfg.net.decoder_channels, rv_class=cfg.net.rv_class)
        net.load_state_dict(load_tensors(Path(out) / "model.safetensors"))
        save_tensors(Path(out) / "encoder.safetensors", net.encoder_state_dict(), metadata={"format": ENCODER_FORMAT})
        summary["encoder"] = str(Path(out) / "encoder.safetensors")
    return summary


def train_landmarks(cohorts: list[Path], out: Path, config: Path | None = None, overrides: list[str] | None = None,
                    resume: bool = False) -> dict:
    """Train the anterior / inferior RVIP heatmap net on cohorts with RVIP truth; writes the run folder."""
    cfg = load_config(LandmarkTrainCfg, config, overrides)
    task = LandmarkTask(cfg, list(cohorts))
    return _run(task, cfg, out, resume)
