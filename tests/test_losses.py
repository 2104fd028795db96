"""Losses: multi-positive CLIP loss (hand-computed case), caption loss, CoCa sum, classifier BCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lgeclip.models.losses import (
    CaptionLoss,
    ClassifierLoss,
    ClipLoss,
    CocaLoss,
    caption_ids_from_texts,
    clip_loss_from_logits,
    multi_positive_targets,
)

torch.set_num_threads(1)


def test_caption_ids_from_texts():
    ids = caption_ids_from_texts(["no scar", "scar", "no scar", "x"])
    assert ids.tolist() == [0, 1, 0, 2]


def test_targets_uniform_over_duplicates():
    y = multi_positive_targets(torch.tensor([0, 0, 1, 0]))
    expected = torch.tensor([[1 / 3, 1 / 3, 0, 1 / 3], [1 / 3, 1 / 3, 0, 1 / 3], [0, 0, 1, 0],
                             [1 / 3, 1 / 3, 0, 1 / 3]])
    assert torch.allclose(y, expected)


def test_multi_positive_loss_hand_computed():
    # 3 images, captions [A, A, B]; logits Z (image rows x text columns), already scaled.
    z = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    ids = torch.tensor([0, 0, 1])
    # image->text rows, targets (.5, .5, 0) for rows 0-1 and (0, 0, 1) for row 2:
    #   row0: ln(e^2 + e + 1) - (2 + 1)/2 = 2.407606 - 1.5 = 0.907606
    #   row1: ln(1 + e + 1)   - (0 + 1)/2 = 1.551445 - 0.5 = 1.051445
    #   row2: ln(e + 1 + e^2) - 2         = 0.407606                   -> mean 0.788886
    # text->image columns:
    #   col0 (2, 0, 1): ln(e^2 + 1 + e) - (2 + 0)/2 = 1.407606
    #   col1 (1, 1, 0): ln(2e + 1)      - (1 + 1)/2 = 0.861995
    #   col2 (0, 0, 2): ln(2 + e^2)     - 2         = 0.239545          -> mean 0.836382
    # total = (0.788886 + 0.836382) / 2 = 0.812634
    e = math.e
    i2t = ((math.log(e**2 + e + 1) - 1.5) + (math.log(2 + e) - 0.5) + (math.log(e + 1 + e**2) - 2)) / 3
    t2i = ((math.log(e**2 + 1 + e) - 1) + (math.log(2 * e + 1) - 1) + (math.log(2 + e**2) - 2)) / 3
    hand = (i2t + t2i) / 2
    assert hand == pytest.approx(0.812634, abs=1e-5)
    assert clip_loss_from_logits(z, ids).item() == pytest.approx(hand, abs=1e-5)


def test_clip_loss_module_matches_logits_formula():
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    ids = torch.tensor([0, 1, 0, 2, 1])
    scale = torch.tensor(10.0)
    assert ClipLoss()(img, txt, scale, ids).item() == pytest.approx(
        clip_loss_from_logits(10.0 * img @ txt.t(), ids).item(), abs=1e-6)


def test_distinct_ids_equal_naive_clip():
    torch.manual_seed(1)
    z = torch.randn(4, 4)
    naive = (F.cross_entropy(z, torch.arange(4)) + F.cross_entropy(z.t(), torch.arange(4))) / 2
    assert clip_loss_from_logits(z, torch.arange(4)).item() == pytest.approx(naive.item(), abs=1e-6)
    assert clip_loss_from_logits(z, None).item() == pytest.approx(naive.item(), abs=1e-6)


def test_identical_captions_are_not_negatives():
    # 3 images, captions [A, A, C]. On the logits: raising the similarity of image 0 to text 1 (the other copy of
    # its own caption) raises the naive loss (a negative) but lowers the multi-positive loss (a positive).
    z = torch.tensor([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 3.0]], requires_grad=True)
    clip_loss_from_logits(z, None).backward()
    assert z.grad[0, 1].item() > 0 and z.grad[1, 0].item() > 0
    z.grad = None
    clip_loss_from_logits(z, torch.tensor([0, 0, 1])).backward()
    assert z.grad[0, 1].item() < 0 and z.grad[1, 0].item() < 0


def _optimise_texts(ids: torch.Tensor | None, steps: int = 60) -> float:
    """Fit free text features to 3 fixed images (two different images share caption A); return cos(t0, t1)."""
    torch.manual_seed(5)
    img = F.normalize(torch.randn(3, 16), dim=-1)
    base = torch.randn(16)
    txt = torch.stack([base + 0.1 * torch.randn(16), base + 0.1 * torch.randn(16), torch.randn(16)])
    txt.requires_grad_(True)  # texts 0 and 1 start almost equal (same string, dropout-like jitter)
    opt = torch.optim.SGD([txt], lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        t = F.normalize(txt, dim=-1)
        ClipLoss()(img, t, torch.tensor(10.0), ids).backward()
        opt.step()
    t = F.normalize(txt.detach(), dim=-1)
    return torch.dot(t[0], t[1]).item()


def test_naive_loss_pushes_duplicate_captions_apart_multi_positive_does_not():
    ids = torch.tensor([0, 0, 1])
    cos_naive = _optimise_texts(None)
    cos_multi = _optimise_texts(ids)
    assert cos_multi > 0.95  # the two copies of caption A stay together
    assert cos_naive < cos_multi - 0.3  # naive CLIP treats them as negatives and separates them


def test_identical_features_make_naive_and_multi_equal():
    # When duplicate captions have exactly identical text features (frozen encoder, no projection dropout),
    # the two losses coincide in value; they differ once the copies' features differ (dropout, unfrozen layers).
    torch.manual_seed(2)
    img = F.normalize(torch.randn(3, 8), dim=-1)
    a, c = F.normalize(torch.randn(2, 8), dim=-1)
    txt = torch.stack([a, a, c])
    ids = torch.tensor([0, 0, 1])
    scale = torch.tensor(10.0)
    assert ClipLoss()(img, txt, scale, ids).item() == pytest.approx(ClipLoss()(img, txt, scale).item(), abs=1e-5)


def test_caption_loss_ignores_padding():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, 3, -100], [4, -100, -100, -100]])
    keep = labels != -100
    expected = F.cross_entropy(logits[keep], labels[keep])
    assert CaptionLoss()(logits, labels).item() == pytest.approx(expected.item(), abs=1e-6)
    logits2 = logits.clone()
    logits2[0, 3] += 100.0  # a padded position: no effect
    assert CaptionLoss()(logits2, labels).item() == pytest.approx(expected.item(), abs=1e-6)


def test_coca_loss_terms_and_weights():
    torch.manual_seed(4)
    out = {"image_features": F.normalize(torch.randn(3, 8), dim=-1),
           "text_features": F.normalize(torch.randn(3, 8), dim=-1), "logit_scale": torch.tensor(5.0),
           "caption_logits": torch.randn(3, 4, 9), "caption_labels": torch.randint(0, 9, (3, 4))}
    ids = torch.tensor([0, 1, 0])
    terms = CocaLoss(contrastive_weight=0.5, caption_weight=2.0)(out, ids)
    assert set(terms) == {"contrastive_loss", "caption_loss", "loss"}
    assert terms["loss"].item() == pytest.approx(0.5 * terms["contrastive_loss"].item()
                                                 + 2.0 * terms["caption_loss"].item(), abs=1e-5)
    no_cap = CocaLoss(1.0, 0.0)({**out, "caption_logits": None, "caption_labels": None}, ids)
    assert no_cap["caption_loss"].item() == 0.0
    assert no_cap["loss"].item() == pytest.approx(no_cap["contrastive_loss"].item())
    with pytest.raises(ValueError, match="caption_logits"):
        CocaLoss(1.0, 1.0)({**out, "caption_logits": None}, ids)


def test_classifier_loss_ignores_unknown_labels():
    logits = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1, 0, -1])
    terms = ClassifierLoss()({"logits": logits}, labels)
    expected = F.binary_cross_entropy_with_logits(logits[:2], torch.tensor([1.0, 0.0]))
    assert terms["loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert set(terms) == {"bce_loss", "loss"}
    weighted = ClassifierLoss(pos_weight=3.0)({"logits": logits}, labels)["loss"]
    assert weighted.item() > terms["loss"].item()
