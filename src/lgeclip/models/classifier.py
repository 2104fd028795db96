"""Image-only baseline: the same initialised DenseNet121 encoder + Projection + a 1-logit head."""

from __future__ import annotations

import torch
from torch import nn

from lgeclip.models.configs import ClassifierCfg
from lgeclip.models.vision import VisionTower
from lgeclip.models.vision_init import LoadReport, load_vision_init


class ImageClassifier(nn.Module):
    """(B, 1, S, S) in [0, 1] -> {"logits": (B,)} scar logit; pair with ``ClassifierLoss``."""

    def __init__(self, cfg: ClassifierCfg, init_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTower(cfg.embed_dim, cfg.proj_dropout, cfg.image_mean, cfg.image_std)
        self.init_report: LoadReport | None = load_vision_init(self.visual.encoder, cfg) if init_weights else None
        self.head = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.GELU(), nn.Dropout(cfg.head_dropout),
                                  nn.Linear(cfg.embed_dim, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        # images: (B, 1, S, S) in [0, 1]
        z = self.visual(images)  # (B, p)
        return {"logits": self.head(z).squeeze(-1)}  # (B,)
