"""The ``Task`` protocol: everything task-specific that :func:`lgeclip.train.loop.fit` needs.

A task wires datasets -> batch -> model -> named losses, and knows nothing about device placement, DDP,
mixed precision, optimisers or checkpoints; the loop owns those. Subclass :class:`Task` and override at least
``build_model``, ``train_dataset`` and ``training_step``.

Contract (what the loop does with each method, in order):

- ``build_model()`` once per process, right after ``seed_everything(cfg.seed)`` (identical on all ranks).
  Return the module on CPU; the loop moves it to the device (and channels_last).
- ``param_groups(model)`` -> what ``torch.optim.Adam(W)`` accepts: an iterable of parameters or of dicts
  (``{"params": [...], "lr": ..., "weight_decay": ...}``; groups without those keys get the loop's values).
  Default: every parameter with ``requires_grad``.
- ``train_dataset()`` / ``val_dataset()`` once per fit. If the train dataset has ``set_epoch(epoch)`` the loop
  calls it (0-based epoch) before each epoch, so items can draw randomness from
  ``np.random.default_rng([seed, epoch, index])`` and do not depend on workers, ranks or resumption.
  The loop never keeps DataLoader workers alive across epochs, so ``set_epoch`` always reaches them.
- ``collate(items)`` -> batch (default ``torch.utils.data.default_collate``). The loop then moves every tensor
  of the batch (nested dict/list/tuple) to the device; non-tensors (captions, ids) pass unchanged.
- ``training_step(model, batch)`` -> ``{"loss": scalar tensor, <other named scalar terms>...}``.
  Runs in train mode under the loop's autocast. ``model`` may be the DDP wrapper: call ``model(...)``
  (its ``forward``) for everything that needs gradients, never ``model.module.encode_x(...)`` (that would
  bypass DDP's gradient synchronisation); use :func:`unwrap_model` only to read attributes. Every returned
  term is logged as ``train_<name>`` (epoch mean weighted by batch size); an optional ``"n"`` entry (int)
  overrides :meth:`Task.batch_size_of` and is not logged.
- ``batch_size_of(batch)`` -> number of images in the batch (default: first dim of the first tensor found).
- ``validate(model, dataset, device)`` -> ``{name: float}``; rank 0 only, unwrapped model in eval mode, under
  ``torch.no_grad()`` and, when ``cfg.bf16``, under bf16 autocast (so cast outputs with ``.float()`` before
  ``.numpy()``). Names are logged with a ``val_`` prefix (added unless already present) and can be the
  loop's ``cfg.monitor`` (e.g. ``"val_balanced_accuracy"``). Use :func:`to_device` to move batches.
- ``config_dict()`` -> the task's resolved config (plain YAML-able dict), written to ``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP / DataParallel wrapper (or ``model`` itself)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def to_device(obj: Any, device: torch.device | str, channels_last: bool = False, non_blocking: bool = False) -> Any:
    """Move every tensor in a nested dict/list/tuple to ``device``; 4-D float tensors optionally channels_last."""
    if isinstance(obj, torch.Tensor):
        t = obj.to(device, non_blocking=non_blocking)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, channels_last, non_blocking) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device, channels_last, non_blocking) for v in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device, channels_last, non_blocking) for v in obj)
    return obj


def _first_len(obj: Any) -> int | None:
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.dim() > 0 else None
    if isinstance(obj, Mapping):
        for v in obj.values():
            n = _first_len(v)
            if n is not None:
                return n
        return None
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        for v in obj:
            n = _first_len(v)
            if n is not None:
                return n
        return len(obj) if len(obj) else None
    return None


class Task:
    """Base class of training tasks (segmentation, landmarks, CLIP+caption, image-only classifier).

    See the module docstring for the full contract. ``name`` is written to ``run.json`` and the logs.
    """

    name: str = "task"

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        return None

    def collate(self, items: list) -> Any:
        return default_collate(items)

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def batch_size_of(self, batch: Any) -> int:
        n = _first_len(batch)
        if n is None:
            raise ValueError(f"{type(self).__name__}: cannot tell the batch size; override batch_size_of()")
        return n

    def validate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict[str, float]:
        return {}

    def param_groups(self, model: nn.Module) -> Iterable:
        return [p for p in model.parameters() if p.requires_grad]

    def config_dict(self) -> dict:
        return {}
