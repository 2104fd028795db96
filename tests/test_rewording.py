"""The reworded-caption check fails a model that only learned the level suffix and passes one that learned scar."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from _clip_fixtures import make_tiny_cache

from lgeclip.data.clip import ClipPairs, DataCfg
from lgeclip.eval.rewording import REWORDED, reworded_check
from lgeclip.preprocess.cache import read_cache
from lgeclip.synth.templates import level_suffix

LEVELS = ("basal", "mid", "apical")
NEGATION = ("no ", "free of", "without", "nothing")


class _LevelOnly(torch.nn.Module):
    """Image -> its level (looked up: it 'sees' the level perfectly), text -> the level of its suffix; nothing else."""

    def __init__(self, level_of_image: dict[bytes, str]) -> None:
        super().__init__()
        self.level_of_image = level_of_image

    def get_logit_scale(self):
        return torch.tensor(100.0)

    def encode_image(self, images, normalize=True):
        out = torch.zeros(len(images), 3)
        for i, im in enumerate(images):
            out[i, LEVELS.index(self.level_of_image[im.numpy().tobytes()])] = 1.0
        return out

    def encode_text(self, texts, normalize=True):
        return torch.stack([F.one_hot(torch.tensor(next(i for i, lv in enumerate(LEVELS) if level_suffix(lv) in t)),
                                      3).float() for t in texts])


class _ScarAware(torch.nn.Module):
    """Image -> scar or not (looked up), text -> scar vs negated wording (ignores the suffix)."""

    def __init__(self, scar_of_image: dict[bytes, bool]) -> None:
        super().__init__()
        self.scar_of_image = scar_of_image

    def get_logit_scale(self):
        return torch.tensor(50.0)

    def encode_image(self, images, normalize=True):
        scar = [self.scar_of_image[im.numpy().tobytes()] for im in images]
        return torch.tensor([[0.8, 0.6] if s else [0.6, 0.8] for s in scar])

    def encode_text(self, texts, normalize=True):
        neg = [any(w in t.lower() for w in NEGATION) for t in texts]
        return torch.tensor([[0.0, 1.0] if n else [1.0, 0.0] for n in neg])


def test_reworded_captions_fail_a_level_only_model(tmp_path):
    cache = make_tiny_cache(tmp_path, n_patients=12, size=64, seed=5)
    held_out = [r for r in read_cache(cache) if r.split == "test"]
    assert {r.label for r in held_out} == {"positive", "negative"}
    ds = ClipPairs(held_out, DataCfg(image_size=64), train=False, require_caption=False)
    truth = np.array([r.label == "positive" for r in held_out])
    level_of = {ds[i]["image"].numpy().tobytes(): r.level for i, r in enumerate(held_out)}
    scar_of = {ds[i]["image"].numpy().tobytes(): bool(t) for i, t in enumerate(truth)}

    level_only = reworded_check(_LevelOnly(level_of), ds, truth)
    assert level_only["reworded_auroc"] == 0.5 and not level_only["passed"]
    assert level_only["median_margin"] == 0.0

    scar = reworded_check(_ScarAware(scar_of), ds, truth)
    assert scar["passed"] and scar["reworded_auroc"] == 1.0 and scar["median_margin"] > 0.4
    # the reworded sentences are not the training wording (tests/_clip_fixtures.py) nor the zero-shot prompts
    assert not any("hyperenhancement" in t for ts in REWORDED.values() for t in ts)
