"""Anatomy nets: shapes, encoder layout, gradients, heatmap targets and sub-pixel decoding."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DenseNet121

from lgeclip.anatomy.nets import (
    DenseNetUNet,
    ResNetUNet,
    build_landmark_net,
    build_seg_net,
    decode_heatmaps,
    gaussian_heatmaps,
)
from lgeclip.utils import load_tensors, save_tensors

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def seg_net() -> DenseNetUNet:
    torch.manual_seed(0)
    return build_seg_net().eval()


@pytest.fixture(scope="module")
def lm_net() -> ResNetUNet:
    torch.manual_seed(0)
    return build_landmark_net().eval()


@pytest.mark.parametrize("size", [128, 224])
def test_shapes(seg_net, lm_net, size):
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        assert seg_net(x).shape == (2, 3, size, size)
        assert lm_net(x).shape == (2, 2, size, size)


def test_non_square_and_full_res_decoder():
    net = DenseNetUNet(decoder_channels=(32, 16, 16, 8, 8)).eval()  # 5 stages: full-resolution block
    with torch.no_grad():
        assert net(torch.randn(1, 1, 64, 96)).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match="channel counts"):
        DenseNetUNet(decoder_channels=(32, 16))


@pytest.mark.parametrize("size", [112, 100])
def test_size_not_divisible_by_32(seg_net, lm_net, size):
    x = torch.randn(1, 1, size, size)
    for net in (seg_net, lm_net):
        with pytest.raises(ValueError, match="divisible by 32"):
            net(x)


def test_encoder_is_densenet_features(seg_net, tmp_path):
    ref = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1).features
    sd = seg_net.encoder_state_dict()
    assert list(sd) == list(ref.state_dict())
    assert all(sd[k].shape == v.shape for k, v in ref.state_dict().items())
    save_tensors(tmp_path / "encoder.safetensors", sd)
    ref.load_state_dict(load_tensors(tmp_path / "encoder.safetensors"), strict=True)
    assert torch.equal(ref.conv0.weight, seg_net.encoder.conv0.weight)
    other = build_seg_net()
    other.load_encoder_state_dict({f"features.{k}": v for k, v in sd.items()})  # prefixed keys accepted too
    assert torch.equal(other.encoder.conv0.weight, seg_net.encoder.conv0.weight)


@pytest.mark.parametrize("factory", [build_seg_net, build_landmark_net])
def test_gradients_reach_every_parameter(factory):
    torch.manual_seed(1)
    net = factory().train()
    out = net(torch.randn(2, 1, 64, 64))
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_gaussian_heatmaps_peak_and_nan():
    pts = torch.tensor([[[10.0, 20.0], [float("nan"), 5.0]]])
    h = gaussian_heatmaps(pts, (32, 40), sigma=2.0)
    assert h.shape == (1, 2, 32, 40)
    assert h[0, 0, 10, 20] == pytest.approx(1.0)
    assert h[0, 0].argmax().item() == 10 * 40 + 20
    assert h[0, 1].abs().sum() == 0


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_decode_subpixel(sigma):
    g = torch.Generator().manual_seed(int(sigma * 10))
    pts = torch.rand(16, 2, 2, generator=g) * 56 + 4  # random sub-pixel positions inside a 64 x 64 map
    h = gaussian_heatmaps(pts, (64, 64), sigma)
    err = (decode_heatmaps(h) - pts).norm(dim=-1)
    assert err.max() < 0.5
    # logits of a spatial softmax (log of a Gaussian up to a constant) decode the same way
    err_log = (decode_heatmaps(torch.log(h.clamp_min(1e-30)) + 3.0, log_input=True) - pts).norm(dim=-1)
    assert err_log.max() < 0.5
    # noisy, scaled heatmaps still decode to well under a pixel
    noisy = 5.0 * h + 0.01 * torch.rand(h.shape, generator=g)
    assert (decode_heatmaps(noisy) - pts).norm(dim=-1).max() < 0.5


def test_decode_at_border_and_flat():
    pts = torch.tensor([[[0.2, 63.0], [31.7, 0.0]]])
    h = gaussian_heatmaps(pts, (64, 64), 2.0)
    assert (decode_heatmaps(h) - pts).norm(dim=-1).max() < 0.5
    flat = torch.zeros(1, 1, 16, 16)
    out = decode_heatmaps(flat)
    assert torch.isfinite(out).all() and out.shape == (1, 1, 2)
