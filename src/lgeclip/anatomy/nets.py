"""Anatomy nets: a DenseNet121-encoder UNet (LV blood pool / myocardium) and a ResNet18-encoder UNet that
predicts two RV-insertion-point heatmaps, plus Gaussian heatmap targets and sub-pixel heatmap decoding.

Both encoders are MONAI nets used as they are, so their weights stay interchangeable with the plain
classifiers: ``DenseNetUNet.encoder`` IS ``DenseNet121(...).features`` (the CLIP vision tower starts from it) and
``ResNetUNet.encoder`` is a MONAI ``resnet18``. Input height and width must be divisible by 32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet121, resnet18
from torch import nn

SEG_CLASSES = ("background", "blood_pool", "myocardium")
RVIP_NAMES = ("anterior", "inferior")
ENCODER_FORMAT = "monai.DenseNet121.features"
DECODER_CHANNELS = (128, 64, 32, 32)  # /16, /8, /4, /2; head at /2 (see UNetDecoder)


def _check_size(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name}: expected (B, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 32 or w % 32:
        raise ValueError(f"{name}: input size {h}x{w} is not divisible by 32 (use e.g. 128 or 224)")


class ConvBlock(nn.Sequential):
    """Two 3x3 conv + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class UNetDecoder(nn.Module):
    """Upsample x2 (bilinear) + concat skip + ConvBlock, once per skip (deep -> shallow).

    With ``len(channels) == len(skip_channels)`` the 1x1 head runs at the shallowest skip's resolution (/2) and
    its logits are upsampled x2 bilinearly (about 1.5x faster on CPU); with one more entry, a last ConvBlock
    runs at full resolution before the head.
    """

    def __init__(self, bottom_channels: int, skip_channels: Sequence[int], channels: Sequence[int],
                 out_channels: int) -> None:
        super().__init__()
        if len(channels) not in (len(skip_channels), len(skip_channels) + 1):
            raise ValueError(f"decoder needs {len(skip_channels)} or {len(skip_channels) + 1} channel counts, "
                             f"got {list(channels)}")
        blocks, cin = [], bottom_channels
        for cs, co in zip(skip_channels, channels[: len(skip_channels)], strict=True):
            blocks.append(ConvBlock(cin + cs, co))
            cin = co
        self.blocks = nn.ModuleList(blocks)
        self.final = ConvBlock(cin, channels[-1]) if len(channels) > len(skip_channels) else None
        self.head = nn.Conv2d(channels[-1], out_channels, 1)

    def forward(self, bottom: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = bottom  # (B, Cb, H/32, W/32)
        for block, s in zip(self.blocks, skips, strict=True):
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, s], dim=1))  # (B, c_i, H/2^k, W/2^k)
        if self.final is None:
            return F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)  # (B, out, H, W)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.head(self.final(x))  # (B, out, H, W)


class DenseNetUNet(nn.Module):
    """2-D UNet with a MONAI DenseNet121 ``.features`` encoder -> logits (background, blood pool, myocardium).

    Skips: relu0 (/2, 64), denseblock1 (/4, 256), denseblock2 (/8, 512), denseblock3 (/16, 1024); bottom:
    relu(norm5) (/32, 1024).
    """

    skip_names = ("relu0", "denseblock1", "denseblock2", "denseblock3")

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 3,
                 decoder_channels: Sequence[int] = DECODER_CHANNELS) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"DenseNetUNet supports spatial_dims=2 only, got {spatial_dims}")
        self.encoder = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1).features
        self.decoder = UNetDecoder(1024, (1024, 512, 256, 64), decoder_channels, out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, "DenseNetUNet")  # (B, Cin, H, W)
        skips = []
        for name, module in self.encoder.named_children():
            x = module(x)
            if name in self.skip_names:
                skips.append(x)
        x = F.relu(x)  # (B, 1024, H/32, W/32) after norm5
        return self.decoder(x, skips[::-1])  # (B, out, H, W)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """Encoder weights, keys exactly as ``DenseNet121(...).features.state_dict()`` (no prefix)."""
        return {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}

    def load_encoder_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load encoder weights saved by ``encoder_state_dict`` (a ``features.`` prefix is also accepted)."""
        state = {k.removeprefix("features."): v for k, v in state.items()}
        self.encoder.load_state_dict(state, strict=True)


class ResNetUNet(nn.Module):
    """2-D UNet with a MONAI resnet18 encoder -> one heatmap (logits) per landmark (anterior, inferior RVIP).

    Skips: relu(bn1(conv1)) (/2, 64), layer1 (/4, 64), layer2 (/8, 128), layer3 (/16, 256); bottom: layer4
    (/32, 512).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2,
                 decoder_channels: Sequence[int] = DECODER_CHANNELS) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"ResNetUNet supports spatial_dims=2 only, got {spatial_dims}")
        enc = resnet18(spatial_dims=2, n_input_channels=in_channels, shortcut_type="B", bias_downsample=False,
                       conv1_t_stride=2)
        enc.avgpool, enc.fc = nn.Identity(), nn.Identity()  # unused; keeps the state dict to the encoder
        self.encoder = enc
        self.decoder = UNetDecoder(512, (256, 128, 64, 64), decoder_channels, out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, "ResNetUNet")  # (B, Cin, H, W)
        e = self.encoder
        s0 = e.act(e.bn1(e.conv1(x)))  # (B, 64, H/2, W/2)
        s1 = e.layer1(e.maxpool(s0))  # (B, 64, H/4, W/4)
        s2 = e.layer2(s1)  # (B, 128, H/8, W/8)
        s3 = e.layer3(s2)  # (B, 256, H/16, W/16)
        b = e.layer4(s3)  # (B, 512, H/32, W/32)
        return self.decoder(b, [s3, s2, s1, s0])  # (B, K, H, W)


def gaussian_heatmaps(points: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Gaussian heatmaps (peak 1) at sub-pixel ``points`` (B, K, 2) (row, col) -> (B, K, H, W); NaN points give 0."""
    h, w = size
    rows = torch.arange(h, dtype=torch.float32, device=points.device).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float32, device=points.device).view(1, 1, 1, w)
    p = points.float()
    d2 = (rows - p[..., 0, None, None]) ** 2 + (cols - p[..., 1, None, None]) ** 2
    out = torch.exp(-d2 / (2.0 * sigma**2))
    return torch.nan_to_num(out, nan=0.0)


def _quadratic_design(radius: int) -> torch.Tensor:
    """Design matrix (n, 6) of [1, dr, dc, dr^2, dc^2, dr*dc] over a square (2r+1)^2 window."""
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    dr, dc = torch.meshgrid(r, r, indexing="ij")
    dr, dc = dr.reshape(-1), dc.reshape(-1)
    return torch.stack([torch.ones_like(dr), dr, dc, dr * dr, dc * dc, dr * dc], dim=1)


def decode_heatmaps(h: torch.Tensor, radius: int = 2, log_input: bool = False) -> torch.Tensor:
    """Sub-pixel peak positions (B, K, 2) (row, col) of heatmaps (B, K, H, W).

    The peak is the argmax; it is refined by a least-squares 2-D quadratic fit to ``log(h)`` (exact for a
    Gaussian) over the in-image pixels of a (2r+1)^2 window. With ``log_input=True`` the values are used as they
    are (e.g. logits of a spatial softmax). The refinement is clamped to the window and falls back to the argmax
    when the fit is not a maximum.
    """
    if h.ndim != 4:
        raise ValueError(f"decode_heatmaps: expected (B, K, H, W), got shape {tuple(h.shape)}")
    b, k, hh, ww = h.shape
    x = h.detach().float().reshape(b * k, hh, ww)
    idx = x.reshape(b * k, -1).argmax(dim=1)
    pr, pc = (idx // ww), (idx % ww)
    v = x if log_input else torch.log(x.clamp_min(1e-30))
    offs = torch.arange(-radius, radius + 1, device=h.device)
    rr = pr[:, None, None] + offs.view(1, -1, 1)  # (N, w, 1)
    cc = pc[:, None, None] + offs.view(1, 1, -1)  # (N, 1, w)
    inside = ((rr >= 0) & (rr < hh) & (cc >= 0) & (cc < ww)).reshape(b * k, -1).double()  # (N, n)
    n_idx = torch.arange(b * k, device=h.device)[:, None, None]
    win = v[n_idx, rr.clamp(0, hh - 1), cc.clamp(0, ww - 1)].reshape(b * k, -1).double()  # (N, n)
    win = torch.nan_to_num(win - win.max(dim=1, keepdim=True).values, nan=0.0, neginf=-60.0).clamp_min(-60.0)
    a = _quadratic_design(radius).to(h.device)  # (n, 6)
    ata = torch.einsum("nk,bn,nl->bkl", a, inside, a) + 1e-9 * torch.eye(6, dtype=a.dtype, device=a.device)
    aty = torch.einsum("nk,bn->bk", a, inside * win)
    coef = torch.linalg.solve(ata, aty.unsqueeze(-1)).squeeze(-1)  # (N, 6)
    _, gr, gc, arr, acc, arc = coef.unbind(dim=1)
    hess = torch.stack([torch.stack([2 * arr, arc], -1), torch.stack([arc, 2 * acc], -1)], -2)  # (N, 2, 2)
    det = hess[:, 0, 0] * hess[:, 1, 1] - hess[:, 0, 1] ** 2
    ok = (hess[:, 0, 0] < 0) & (det > 1e-12)
    safe = torch.where(ok[:, None, None], hess, -torch.eye(2, dtype=hess.dtype, device=hess.device))
    delta = -torch.linalg.solve(safe, torch.stack([gr, gc], -1).unsqueeze(-1)).squeeze(-1)  # (N, 2)
    delta = torch.where(ok[:, None], delta, torch.zeros_like(delta)).clamp(-radius, radius)
    out = torch.stack([pr, pc], -1).double() + delta
    return out.float().reshape(b, k, 2)


def build_seg_net(decoder_channels: Sequence[int] = DECODER_CHANNELS, rv_class: bool = False) -> DenseNetUNet:
    """The segmentation net as trained by ``train_segmentation`` (1 input channel; 3 classes, or 4 with the RV
    cavity as class 3)."""
    return DenseNetUNet(2, 1, len(SEG_CLASSES) + int(rv_class), decoder_channels=tuple(decoder_channels))


def build_landmark_net(decoder_channels: Sequence[int] = DECODER_CHANNELS) -> ResNetUNet:
    """The RVIP heatmap net as trained by ``train_landmarks`` (1 input channel, 2 heatmaps)."""
    return ResNetUNet(2, 1, len(RVIP_NAMES), decoder_channels=tuple(decoder_channels))
