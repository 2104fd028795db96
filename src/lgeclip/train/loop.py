"""One generic training loop for every task (segmentation, landmarks, CLIP+caption, image-only classifier).

``fit(task, cfg, out_dir)`` owns seeding, device, DDP, optimiser + LR schedule, bf16 autocast, channels_last,
gradient clipping, progress/logging, ``metrics.csv``, atomic checkpoints, the best model and resumption.
The task (:class:`lgeclip.train.task.Task`) owns data, model and losses.

Run folder: ``config.yaml`` (task + loop config), ``train.log``, ``metrics.csv`` (one row per epoch),
``model.safetensors`` (best by ``cfg.monitor``), ``run.json``, ``checkpoints/last/`` (see ``checkpoint.py``),
``tensorboard/`` when tensorboard is installed.

Batch size: ``cfg.batch_size`` is GLOBAL; each of ``world_size`` ranks loads ``batch_size // world_size`` items
(it must divide). Data order depends only on ``(seed, epoch)``: a ``DistributedSampler(shuffle=True,
seed=cfg.seed)`` under DDP, else :class:`EpochSampler` (same permutation ``randperm(n, seed + epoch)``), so with a
divisible dataset 1 process x batch B and 2 ranks x B/2 see the same items per step.

Resumption works at epoch boundaries: ``checkpoints/last`` holds the state after a whole epoch (weights,
optimiser, scheduler, per-rank RNG states, epoch, step, best metric); a killed run restarts the interrupted
epoch from its beginning, replaying the same sampler order and RNG draws, and so reaches the same weights
as an uninterrupted run with the same config (CPU: bitwise). Changing the loop config on resume (e.g. more
epochs) changes the schedule and breaks that equivalence.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from lgeclip.config import to_dict
from lgeclip.train import dist
from lgeclip.train.checkpoint import (
    cpu_state_dict,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from lgeclip.train.task import Task, to_device, unwrap_model
from lgeclip.utils import atomic_write_json, atomic_write_text, get_logger, save_tensors, seed_everything


@dataclass
class LoopCfg:
    """Training-loop settings (shared by every task)."""

    epochs: int = 10  # number of passes over the training set
    batch_size: int = 32  # GLOBAL batch; per rank = batch_size // world_size
    lr: float = 1e-4  # peak learning rate (param groups may set their own "lr")
    weight_decay: float = 0.0  # default for groups that do not set "weight_decay"
    optimizer: Literal["adam", "adamw"] = "adamw"
    beta2: float = 0.999  # Adam second-moment decay (CLIP recipes often use 0.98)
    scheduler: Literal["constant", "cosine"] = "cosine"  # after linear warm-up
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak lr
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    bf16: bool = False  # bf16 autocast for training_step and validate (CPU and GPU)
    channels_last: bool = False  # model and 4-D input tensors in channels_last
    num_workers: int = 0  # DataLoader workers per rank (recreated each epoch so set_epoch reaches them)
    drop_last: bool = True  # drop the last incomplete batch (BatchNorm / contrastive losses dislike tiny ones)
    seed: int = 0
    monitor: str = "val_loss"  # metric that picks model.safetensors: val_<name> from validate or train_<term>
    monitor_mode: Literal["max", "min"] = "min"
    val_every: int = 1  # validate every N epochs (and after the last one)
    log_every: int = 50  # a train.log line every N optimiser steps; 0 = per epoch only
    max_steps: int = 0  # stop after N optimiser steps in total (smoke runs); 0 = no cap
    checkpoint_every: int = 1  # write checkpoints/last every N epochs (and after the last one)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda if available else cpu
    find_unused_parameters: bool | None = None  # DDP; None = detect with one probe step

    def __post_init__(self) -> None:
        ints = {"epochs": 1, "batch_size": 1, "warmup_steps": 0, "num_workers": 0, "seed": 0, "val_every": 1,
                "log_every": 0, "max_steps": 0, "checkpoint_every": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"LoopCfg.{name} must be an int >= {lo}, got {v!r}")
        for name, ok in (("optimizer", ("adam", "adamw")), ("scheduler", ("constant", "cosine")),
                         ("monitor_mode", ("max", "min")), ("device", ("auto", "cpu", "cuda"))):
            if getattr(self, name) not in ok:
                raise ValueError(f"LoopCfg.{name} must be one of {ok}, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"LoopCfg.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"LoopCfg.weight_decay / grad_clip must be >= 0: {self.weight_decay}, {self.grad_clip}")
        if not 0.0 <= self.min_lr_ratio <= 1.0 or not 0.0 < self.beta2 < 1.0:
            raise ValueError(f"LoopCfg: need 0 <= min_lr_ratio <= 1, 0 < beta2 < 1: {self.min_lr_ratio}, {self.beta2}")
        if not self.monitor:
            raise ValueError("LoopCfg.monitor must name a metric, e.g. 'val_loss'")


def lr_factor(step: int, warmup: int, total: int, kind: str, min_ratio: float = 0.0) -> float:
    """LR multiplier at optimiser step ``step`` (0-based): linear warm-up then constant or cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EpochSampler(Sampler[int]):
    """Single-process shuffling whose order depends only on ``(seed, epoch)`` (same as DistributedSampler's)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (e.g. seed, purpose, epoch, rank)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _build_optimizer(groups: list, cfg: LoopCfg) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.beta2))


def _detect_unused(task: Task, model: nn.Module, dataset, n: int, info: dist.DistInfo, autocast,
                   channels_last: bool) -> bool:
    """One side-effect-free probe step: does any trainable parameter get no gradient (on any rank)?"""
    rng = rng_state(info.device)
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    batch = to_device(task.collate([dataset[i] for i in range(min(n, len(dataset)))]), info.device, channels_last)
    model.train()
    with autocast():
        out = task.training_step(model, batch)
    out["loss"].backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.load_state_dict(snapshot)
    set_rng_state(rng, info.device)
    return dist.any_true(bool(unused), info)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not enabled)


def _tensorboard(out: Path):
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
        from torch.utils.tensorboard import SummaryWriter
    except Exception:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _read_csv(path: Path, upto_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= upto_epoch]


def _better(value: float, best: float | None, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def fit(task: Task, cfg: LoopCfg, out_dir: str | Path, resume: bool = False, extra_config: dict | None = None) -> dict:
    """Train ``task`` with ``cfg`` into ``out_dir``; returns a summary dict (same on every rank).

    ``resume=True`` continues from ``out_dir/checkpoints/last`` (or starts fresh when there is none); without it
    a folder that already holds a checkpoint is refused. ``extra_config`` adds top-level sections to
    ``config.yaml`` (e.g. ``{"data": {...}}``). Summary keys: task, monitor, best_metric, best_epoch, epochs,
    steps, wall_time_s, images_per_s, out_dir.
    """
    t_start = time.time()
    info = dist.setup(cfg.device)
    out = Path(out_dir)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"LoopCfg.batch_size={cfg.batch_size} is global and must be divisible by "
                         f"world_size={info.world_size}")
    per_rank_bs = cfg.batch_size // info.world_size
    ckpt_root = out / "checkpoints"
    ckpt = find_checkpoint(ckpt_root)
    if ckpt is not None and not resume:
        raise FileExistsError(f"{out} already holds a checkpoint ({ckpt}); pass resume=True or use a new folder")
    main = info.is_main
    log_path = out / "train.log"
    if main:
        out.mkdir(parents=True, exist_ok=True)
    logger = get_logger("lgeclip.train", log_file=log_path if main else None)
    log = logger.info if main else (lambda *a, **k: None)
    tb = _tensorboard(out) if main else None
    try:
        return _fit(task, cfg, out, info, per_rank_bs, ckpt if resume else None, extra_config, log, tb, t_start)
    finally:
        if tb is not None:
            tb.close()
        for h in list(logger.handlers):
            if getattr(h, "baseFilename", None) and Path(h.baseFilename).resolve() == log_path.resolve():
                logger.removeHandler(h)
                h.close()


def _fit(task, cfg, out, info, per_rank_bs, ckpt, extra_config, log, tb, t_start) -> dict:  # noqa: C901
    main, device = info.is_main, info.device
    autocast = partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext
    config = {"task_name": task.name, "task": task.config_dict(), "loop": to_dict(cfg)}
    clash = set(extra_config or {}) & set(config)
    if clash:
        raise ValueError(f"extra_config may not redefine {sorted(clash)}")
    config.update(extra_config or {})
    if main:
        old = out / "config.yaml"
        if ckpt is not None and old.is_file() and yaml.safe_load(old.read_text()) != config:
            log(f"resume: config differs from {old}; the new one is written (schedule equivalence may break)")
        atomic_write_text(old, yaml.safe_dump(config, sort_keys=False))

    # ---- model, optimiser, data (identical seeding on every rank -> identical init)
    seed_everything(cfg.seed)
    model = task.build_model().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _build_optimizer(list(task.param_groups(model)), cfg)
    params = [p for g in opt.param_groups for p in g["params"]]
    train_ds, val_ds = task.train_dataset(), task.val_dataset()
    if val_ds is None and cfg.monitor.startswith("val_"):
        raise ValueError(f"monitor={cfg.monitor!r} needs a validation set but {task.name}.val_dataset() is None")
    if info.distributed:
        sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=cfg.drop_last)
    else:
        sampler = EpochSampler(len(train_ds), cfg.seed)
    loader_gen = torch.Generator()
    loader = DataLoader(train_ds, batch_size=per_rank_bs, sampler=sampler, collate_fn=task.collate,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda", drop_last=cfg.drop_last,
                        persistent_workers=False, generator=loader_gen)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{task.name}: {len(train_ds)} training items give no batch of {per_rank_bs} per rank "
                         f"(world_size={info.world_size}, drop_last={cfg.drop_last})")
    total_steps = cfg.epochs * steps_per_epoch if not cfg.max_steps else min(cfg.epochs * steps_per_epoch,
                                                                             cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, warmup=cfg.warmup_steps, total=total_steps,
                                                           kind=cfg.scheduler, min_ratio=cfg.min_lr_ratio))

    start_epoch, step, best, best_epoch = 0, 0, None, None
    if ckpt is not None:
        model_state, optim_state, state = load_checkpoint(ckpt)
        unwrap_model(model).load_state_dict(model_state)
        opt.load_state_dict(optim_state)
        sched.load_state_dict(state["scheduler"])
        start_epoch, step, best, best_epoch = state["epoch"], state["step"], state["best"], state["best_epoch"]
        rngs = state["rng"]
        if len(rngs) == info.world_size:
            set_rng_state(rngs[info.rank], device)
        else:
            seed_everything(derive_seed(cfg.seed, 2, start_epoch, info.rank))
        log(f"resumed from {ckpt}: epoch {start_epoch}, step {step}, best {cfg.monitor}={best}")
    else:
        seed_everything(derive_seed(cfg.seed, 2, 0, info.rank))  # rank-specific stream for dropout etc.

    train_model: nn.Module = model
    if info.distributed:
        fup = cfg.find_unused_parameters
        if fup is None:
            fup = _detect_unused(task, model, train_ds, per_rank_bs, info, autocast, cfg.channels_last)
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=fup)
    n_params = sum(p.numel() for p in params)
    log(f"{task.name}: {n_params / 1e6:.2f} M trainable params, {len(train_ds)} train items, "
        f"{steps_per_epoch} steps/epoch, world_size={info.world_size}, device={device}, bf16={cfg.bf16}")

    rows = _read_csv(out / "metrics.csv", start_epoch) if main and ckpt is not None else []
    show = main and sys.stdout.isatty() and os.environ.get("LGECLIP_NO_PROGRESS", "0") in ("", "0")
    total_images, total_train_s, epochs_done = 0, 0.0, start_epoch
    with _progress(show) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            if cfg.max_steps and step >= cfg.max_steps:
                break
            sampler.set_epoch(epoch)
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            loader_gen.manual_seed(derive_seed(cfg.seed, 1, epoch, info.rank))
            n_steps = steps_per_epoch if not cfg.max_steps else min(steps_per_epoch, cfg.max_steps - step)
            bar = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=n_steps, info="")
            train_model.train()
            sums: dict[str, torch.Tensor] = {}
            count = 0
            t0 = time.perf_counter()
            for i, batch in enumerate(loader):
                if i >= n_steps:
                    break
                batch = to_device(batch, device, cfg.channels_last, non_blocking=device.type == "cuda")
                opt.zero_grad(set_to_none=True)
                with autocast():
                    terms = dict(task.training_step(train_model, batch))
                n = int(terms.pop("n")) if "n" in terms else task.batch_size_of(batch)
                terms["loss"].backward()
                if cfg.grad_clip > 0:
                    terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                lr_used = opt.param_groups[0]["lr"]
                sched.step()
                step += 1
                count += n
                for k, v in terms.items():
                    v = torch.as_tensor(v, device=device).detach().float()
                    sums[k] = sums[k] + v * n if k in sums else v * n
                if show or (cfg.log_every and step % cfg.log_every == 0):
                    mean_loss = (sums["loss"] / count).item()
                    ips = count * info.world_size / max(time.perf_counter() - t0, 1e-9)
                    progress.update(bar, advance=1, info=f"loss {mean_loss:.4f}  {ips:.1f} img/s")
                    if cfg.log_every and step % cfg.log_every == 0:
                        log(f"epoch {epoch + 1} step {step}: loss {mean_loss:.4f} lr {lr_used:.3g} {ips:.1f} img/s")
                        if tb is not None:
                            tb.add_scalar("train/loss_running", mean_loss, step)
                            tb.add_scalar("train/lr", lr_used, step)
            epoch_s = time.perf_counter() - t0
            progress.remove_task(bar)

            # ---- epoch metrics (reduced over ranks)
            keys = sorted(sums)
            packed = dist.all_reduce_sum(torch.stack([sums[k] for k in keys] + [torch.tensor(float(count),
                                                                                  device=device)]), info)
            n_all = packed[-1].item()
            metrics: dict[str, Any] = {"epoch": epoch + 1, "step": step}
            metrics.update({f"train_{k}": packed[j].item() / n_all for j, k in enumerate(keys)})
            if not math.isfinite(metrics["train_loss"]):
                raise FloatingPointError(f"{task.name}: non-finite train loss at epoch {epoch + 1}, step {step}")
            metrics.update(lr=lr_used, images_per_s=n_all / max(epoch_s, 1e-9),
                           epoch_time_s=epoch_s)
            total_images += int(n_all)
            total_train_s += epoch_s
            last_epoch = epoch + 1 == cfg.epochs or bool(cfg.max_steps and step >= cfg.max_steps)
            validated = val_ds is None
            if main and val_ds is not None and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
                inner = unwrap_model(train_model)
                inner.eval()
                with torch.no_grad(), autocast():
                    vm = task.validate(inner, val_ds, device)
                inner.train()
                metrics.update({(k if k.startswith("val_") else f"val_{k}"): float(v) for k, v in vm.items()})
                validated = True

            if main:
                if validated and cfg.monitor not in metrics:
                    raise ValueError(f"monitor={cfg.monitor!r} is not among this epoch's metrics {sorted(metrics)}")
                if validated and _better(metrics[cfg.monitor], best, cfg.monitor_mode):
                    best, best_epoch = float(metrics[cfg.monitor]), epoch + 1
                    save_tensors(out / "model.safetensors", cpu_state_dict(unwrap_model(train_model).state_dict()),
                                 metadata={"task": task.name, "epoch": str(epoch + 1)})
                    atomic_write_json(out / "run.json", {"task": task.name, "monitor": cfg.monitor,
                                                         "best_metric": best, "best_epoch": best_epoch})
                rows.append(metrics)
                _write_csv(out / "metrics.csv", rows)
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
                if tb is not None:
                    for k, v in metrics.items():
                        if k not in ("epoch", "step"):
                            tb.add_scalar(f"epoch/{k}", v, epoch + 1)

            # ---- checkpoint (collective: every rank contributes its RNG state)
            if (epoch + 1) % cfg.checkpoint_every == 0 or last_epoch:
                rngs = dist.all_gather_object(rng_state(device), info)
                best, best_epoch = dist.broadcast_object((best, best_epoch), info)
                if main:
                    state = {"epoch": epoch + 1, "step": step, "best": best, "best_epoch": best_epoch,
                             "monitor": cfg.monitor, "scheduler": sched.state_dict(), "rng": rngs,
                             "world_size": info.world_size, "task": task.name}
                    save_checkpoint(out / "checkpoints", unwrap_model(train_model).state_dict(),
                                    opt.state_dict(), state)
            epochs_done = epoch + 1
            dist.barrier(info)

    best, best_epoch = dist.broadcast_object((best, best_epoch), info)
    summary = {"task": task.name, "monitor": cfg.monitor, "best_metric": best, "best_epoch": best_epoch,
               "epochs": epochs_done, "steps": step, "wall_time_s": time.time() - t_start,
               "images_per_s": total_images / total_train_s if total_train_s else None, "out_dir": str(out)}
    if main:
        if not (out / "model.safetensors").is_file():  # monitor never finite: keep the final weights instead
            log(f"no finite {cfg.monitor} was seen; model.safetensors holds the final weights")
            save_tensors(out / "model.safetensors", cpu_state_dict(unwrap_model(train_model).state_dict()),
                         metadata={"task": task.name, "epoch": str(epochs_done)})
        atomic_write_json(out / "run.json", summary)
        log(f"done: best {cfg.monitor}={best} (epoch {best_epoch}), {step} steps, {summary['wall_time_s']:.1f} s")
    return summary
