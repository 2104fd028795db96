"""Pickle-free, atomic training checkpoints and a weight loader that reports what it loaded.

Layout of ``<run>/checkpoints/last/``:

- ``model.safetensors``: the unwrapped model's ``state_dict``.
- ``optim.safetensors``: optimiser state tensors as ``state.<param_index>.<name>``; the non-tensor parts
  (``param_groups``, non-tensor per-parameter entries) are JSON in the safetensors metadata key ``optim``.
- ``state.json``: epoch, global step, scheduler state, best metric, RNG states (base64 / lists), written last.

:func:`save_checkpoint` writes a fresh ``checkpoints/.tmp-XXXX/`` (each file fsync'd), then swaps it in:
``last`` -> ``.trash-XXXX``, ``.tmp-XXXX`` -> ``last``, delete the trash. A crash at any point leaves a
complete checkpoint: ``last``, or (between the two renames) the ``.trash-*`` copy, which
:func:`find_checkpoint` falls back to. Leftover ``.tmp-*`` / ``.trash-*`` folders are ignored by resume
and removed after the next successful save.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lgeclip.utils import load_tensors

CKPT_FILES = ("model.safetensors", "optim.safetensors", "state.json")


# ----------------------------------------------------------------------------------------------- tensors
def cpu_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies safe for safetensors (tensors sharing storage are cloned apart)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in state.items():
        t = v.detach().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if (ptr is not None and ptr in seen) or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        if ptr is not None:
            seen.add(ptr)
        out[k] = t
    return out


def flatten_optimizer_state(sd: dict) -> tuple[dict[str, torch.Tensor], str]:
    """``optimizer.state_dict()`` -> (tensors named ``state.<pid>.<name>``, JSON of everything else)."""
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        extra[str(pid)] = {}
        for name, v in entry.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = v
            else:
                extra[str(pid)][name] = v
    meta = {"param_groups": sd["param_groups"], "state_extra": extra}
    return cpu_state_dict(tensors), json.dumps(meta)


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta_json: str) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    meta = json.loads(meta_json)
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in meta["state_extra"].items()}
    for key, t in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = t
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------------------------- RNG
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def rng_state(device: torch.device | None = None) -> dict:
    """Python / numpy / torch (and this process's CUDA) RNG states as JSON-able data."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if device is not None and device.type == "cuda":
        out["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return out


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


# ----------------------------------------------------------------------------------------------- files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def clean_stale(root: Path) -> None:
    """Remove leftover ``.tmp-*`` / ``.trash-*`` folders (only while a complete ``last`` exists)."""
    root = Path(root)
    if not _complete(root / "last"):
        return
    for p in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")):
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(root: Path, model_state: dict, optim_state: dict, state: dict) -> Path:
    """Atomically replace ``root/last`` with a checkpoint of the given states; returns ``root/last``."""
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    save_file(cpu_state_dict(model_state), str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = flatten_optimizer_state(optim_state)
    save_file(opt_tensors, str(tmp / "optim.safetensors"), metadata={"optim": opt_meta})
    for name in ("model.safetensors", "optim.safetensors"):
        with open(tmp / name, "rb+") as f:
            os.fsync(f.fileno())
    _write_file(tmp / "state.json", (json.dumps(state, indent=1) + "\n").encode("utf-8"))
    _fsync_dir(tmp)
    last = root / "last"
    trash = None
    if last.exists():
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=root))
        os.replace(last, trash / "ckpt")  # rename old aside (a complete copy survives a crash from here on)
    os.replace(tmp, last)
    _fsync_dir(root)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    clean_stale(root)  # leftovers of earlier crashes (partial .tmp-*, set-aside copies)
    return last


def _complete(path: Path) -> bool:
    if not all((path / f).is_file() for f in CKPT_FILES):
        return False
    try:
        json.loads((path / "state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def find_checkpoint(root: Path) -> Path | None:
    """``root/last`` if complete, else the newest complete checkpoint set aside mid-swap, else None."""
    root = Path(root)
    if _complete(root / "last"):
        return root / "last"
    aside = sorted((p / "ckpt" for p in root.glob(".trash-*")), key=lambda p: p.stat().st_mtime
                   if p.exists() else 0, reverse=True)
    return next((p for p in aside if _complete(p)), None)


def load_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """(model state, optimiser state dict, state.json) of the checkpoint folder ``path``."""
    from safetensors import safe_open

    path = Path(path)
    model_state = load_tensors(path / "model.safetensors")
    with safe_open(str(path / "optim.safetensors"), framework="pt", device="cpu") as f:
        meta = (f.metadata() or {})["optim"]
        opt_tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    state = json.loads((path / "state.json").read_text())
    return model_state, unflatten_optimizer_state(opt_tensors, meta), state


# ----------------------------------------------------------------------------------------------- weights
def load_model_weights(
    model: nn.Module, source: str | Path | dict[str, torch.Tensor], strict: bool = True, prefix: str = ""
) -> tuple[int, list[str], list[str]]:
    """Load safetensors weights into ``model``, counting what matched.

    ``source``: a ``.safetensors`` path, or a run folder holding ``model.safetensors``, or a tensor dict.
    ``prefix``: use only file keys starting with it (stripped), e.g. ``"features."``.
    Returns ``(n_loaded, missing, unexpected)``: model keys left untouched (absent or shape mismatch) and
    file keys not used. ``strict`` raises ``ValueError`` when either list is non-empty (nothing is loaded then).
    """
    if isinstance(source, dict):
        tensors, where = source, "<tensors>"
    else:
        p = Path(source)
        if p.is_dir():
            p = p / "model.safetensors"
        tensors, where = load_tensors(p), str(p)
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = model.state_dict()
    shape_bad = [k for k, v in tensors.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    ok = {k: v for k, v in tensors.items() if k in own and k not in shape_bad}
    missing = [k for k in own if k not in ok]
    unexpected = [k for k in tensors if k not in ok]
    if strict and (missing or unexpected):
        detail = "; ".join(f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}" for k in shape_bad[:5])
        raise ValueError(
            f"{where}: {len(ok)} of {len(own)} model tensors match; missing {len(missing)} {missing[:5]}, "
            f"unexpected {len(unexpected)} {unexpected[:5]}" + (f"; shape mismatch: {detail}" if detail else "")
        )
    model.load_state_dict(ok, strict=False)
    return len(ok), missing, unexpected
