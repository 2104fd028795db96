"""Distributed helpers: process-group set-up from ``torchrun`` env vars and a few collectives.

``torchrun --nproc_per_node=N`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; when ``WORLD_SIZE > 1``
:func:`setup` initialises the default process group (nccl on GPU, gloo on CPU) unless the caller already did.
Every collective here is a no-op in a single process.

We deliberately never call ``torch.distributed.destroy_process_group()``: on this machine (see
``/work/shared/ENVIRONMENT.md``) about a quarter of gloo runs abort *inside* that call after all work is
done, which turns a finished training run into a non-zero exit. The process group is torn down by process
exit instead; a launcher that needs a hard guarantee can call :func:`exit_now` after its last write.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Pick the device and, under ``torchrun`` with ``WORLD_SIZE > 1``, join the default process group.

    ``device``: ``"auto"`` (cuda if available else cpu), ``"cpu"`` or ``"cuda"``. On GPU each process uses
    ``cuda:LOCAL_RANK``.
    """
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch.cuda.is_available() is False")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
        if use_cuda:
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def _active(info: DistInfo) -> bool:
    return info.world_size > 1 and dist.is_initialized()


def barrier(info: DistInfo) -> None:
    if _active(info):
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks in place (and return it)."""
    if _active(info):
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_true(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is true on any rank."""
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    return bool(all_reduce_sum(t, info).item() > 0)


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """List of ``obj`` from every rank (in rank order); ``[obj]`` in a single process."""
    if not _active(info):
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active(info):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def exit_now(code: int = 0) -> None:
    """Flush stdio and leave with ``os._exit`` (skips interpreter teardown of the process group)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
