"""A tiny Task for loop tests: 2-class 6x6 images, per-item noise from (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lgeclip.train import Task


class ToyDataset(Dataset):
    """Class ``index % 2``; the image mean is +/- ``shift``; noise drawn from ``default_rng([seed, epoch, index])``."""

    def __init__(self, n: int, seed: int, shift: float = 0.35) -> None:
        self.n, self.seed, self.shift, self.epoch = n, seed, shift, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        y = i % 2
        rng = np.random.default_rng([self.seed, self.epoch, i])
        x = rng.normal(0.0, 1.0, (1, 6, 6)).astype(np.float32) + (self.shift if y else -self.shift)
        return {"x": torch.from_numpy(x), "y": torch.tensor(y), "index": torch.tensor(i)}


class ToyNet(nn.Module):
    def __init__(self, dropout: float = 0.1, unused: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4 * 36, 2)
        self.unused = nn.Linear(2, 2) if unused else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.conv(x)))  # (B, 4, 6, 6)
        return self.head(h.flatten(1))  # (B, 2)


class ToyTask(Task):
    name = "toy"

    def __init__(self, n_train: int = 64, n_val: int = 32, seed: int = 0, dropout: float = 0.1,
                 crash_at_call: int | None = None, unused: bool = False, record: bool = False) -> None:
        self.n_train, self.n_val, self.seed, self.dropout = n_train, n_val, seed, dropout
        self.crash_at_call, self.unused, self.record = crash_at_call, unused, record
        self.calls = 0
        self.seen: list[list[int]] = []
        self.model: nn.Module | None = None

    def build_model(self) -> nn.Module:
        self.model = ToyNet(self.dropout, self.unused)
        return self.model

    def train_dataset(self) -> Dataset:
        return ToyDataset(self.n_train, self.seed)

    def val_dataset(self) -> Dataset | None:
        return ToyDataset(self.n_val, self.seed + 1) if self.n_val else None

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.crash_at_call is not None and self.calls == self.crash_at_call:
            raise RuntimeError(f"simulated crash at call {self.calls}")
        if self.record:
            self.seen.append(batch["index"].tolist())
        logits = model(batch["x"])
        loss = F.cross_entropy(logits.float(), batch["y"])
        acc = (logits.argmax(1) == batch["y"]).float().mean()
        return {"loss": loss, "accuracy": acc}

    def validate(self, model: nn.Module, dataset: Dataset, device: torch.device) -> dict[str, float]:
        xs = torch.stack([dataset[i]["x"] for i in range(len(dataset))]).to(device)
        ys = torch.stack([dataset[i]["y"] for i in range(len(dataset))]).to(device)
        logits = model(xs).float()
        return {"loss": F.cross_entropy(logits, ys).item(), "accuracy": (logits.argmax(1) == ys).float().mean().item()}

    def config_dict(self) -> dict:
        return {"n_train": self.n_train, "n_val": self.n_val, "seed": self.seed, "dropout": self.dropout}
