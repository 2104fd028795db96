"""Small shared helpers: atomic writes, safetensors I/O, seeding, logging, hashing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save a dict of torch tensors as safetensors, atomically (never pickle)."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def load_tensors(path: Path) -> dict:
    """Load a safetensors file into a dict of CPU torch tensors."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def stable_hash(*parts: str, length: int = 12) -> str:
    """Short stable hex digest of the joined parts (sha256)."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return h[:length]


def get_logger(name: str = "lgeclip", log_file: Path | None = None) -> logging.Logger:
    """Logger with rich console output; optionally also appends plain lines to ``log_file``."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        from rich.logging import RichHandler

        h = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        h.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(h)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    if log_file is not None:
        log_file = Path(log_file)
        if not any(isinstance(x, logging.FileHandler) and Path(x.baseFilename) == log_file.resolve()
                   for x in logger.handlers):
            log_file.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file)
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(fh)
    return logger


def config_dir(*parts: str) -> Path:
    """A folder or file of the recipes that ship inside the package (``lgeclip/configs``, found through
    ``importlib.resources`` so that a plain ``pip install`` works from any folder), e.g. ``config_dir("train")``."""
    from importlib.resources import files

    return Path(str(files("lgeclip").joinpath("configs", *parts)))


def _shared_data(env: str, name: str) -> Path | None:
    value = os.environ.get(env)
    if value:
        p = Path(value)
        return p if p.is_dir() else None
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *here.parents]:
        cand = base.parent / "shared" / "data" / name
        if cand.is_dir():
            return cand
    return None


def emidec_root() -> Path | None:
    """Where the EMIDEC PNG data lives: $LGECLIP_EMIDEC, else ../shared/data/emidec_png near the repo or cwd."""
    return _shared_data("LGECLIP_EMIDEC", "emidec_png")


def acdc_root() -> Path | None:
    """Where the ACDC NIfTI data lives: $LGECLIP_ACDC, else ../shared/data/acdc near the repo or cwd."""
    return _shared_data("LGECLIP_ACDC", "acdc")


def csv_text(header: tuple[str, ...] | list[str], rows: list[dict] | list[tuple]) -> str:
    """CSV text (header + rows; rows as dicts or tuples) with the csv module's quoting."""
    buf = io.StringIO()
    if rows and isinstance(rows[0], dict):
        w = csv.DictWriter(buf, fieldnames=list(header))
        w.writeheader()
        w.writerows(rows)
    else:
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(rows)
    return buf.getvalue()
