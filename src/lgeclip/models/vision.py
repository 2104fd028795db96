"""Image tower: MONAI DenseNet121 features -> ReLU -> global max-pool -> ``Projection``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DENSENET_CHANNELS = 1024  # channels of DenseNet121's last feature map


class Projection(nn.Module):
    """Linear -> GELU -> Linear -> Dropout -> LayerNorm, mapping ``in_dim`` features to ``out_dim``."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(out_dim, out_dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_dim)
        return self.norm(self.drop(self.fc2(self.act(self.fc1(x)))))  # (B, out_dim)


def build_densenet_encoder() -> nn.Sequential:
    """A fresh (random) MONAI DenseNet121 ``.features`` module for 1-channel 2D images."""
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=2, in_channels=1, out_channels=1).features


class VisionTower(nn.Module):
    """DenseNet121 encoder + global max-pool + projection to the joint space.

    Images arrive as (B, 1, S, S) floats in [0, 1] and are normalised inside as ``(x - mean) / std``
    (defaults 0.5 / 0.25, i.e. [0, 1] -> [-2, 2]). Any S >= 32 works: DenseNet121 downsamples by 32 with
    floor, e.g. 64 -> 2x2, 112 -> 3x3, 224 -> 7x7 feature maps.
    """

    def __init__(self, embed_dim: int = 512, dropout: float = 0.1, mean: float = 0.5, std: float = 0.25) -> None:
        super().__init__()
        self.mean, self.std = float(mean), float(std)
        self.encoder = build_densenet_encoder()
        self.proj = Projection(DENSENET_CHANNELS, embed_dim, dropout)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Spatial feature map (B, 1024, S/32, S/32) after the final ReLU (what the decoder attends to)."""
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must be (B, 1, S, S), got {tuple(images.shape)}")
        x = (images - self.mean) / self.std  # (B, 1, S, S)
        return F.relu(self.encoder(x))  # (B, 1024, h, w)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return torch.amax(fmap, dim=(2, 3))  # (B, 1024, h, w) -> (B, 1024) global max-pool

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: (B, 1, S, S) in [0, 1]
        return self.proj(self.pool(self.forward_features(images)))  # (B, p)
