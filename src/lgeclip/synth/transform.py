"""MONAI-style random transform: synthetic scar on report-negative slices (image, scar mask and text together)."""

from __future__ import annotations

import numpy as np
from monai.transforms import RandomizableTransform

from lgeclip.synth.config import SynthScarCfg
from lgeclip.synth.dictform import apply_to_dict, draw_for_dict


class RandSyntheticScar(RandomizableTransform):
    """Synthetic scar + sentence on report-negative slices with probability ``cfg.prob`` (dict transform).

    ``data`` holds image (H, W) or (1, H, W), myocardium, aha, layers, thickness (mm), level, label, pixel_mm.
    Only label 0 / "negative" slices change; positives and unknown pass untouched. ``randomize(data)`` draws once
    (apply-or-not, then the scar parameters) from ``self.R`` (a ``numpy.random.Generator``); ``__call__`` applies
    them to image, scar mask and caption together. ``self.params`` holds the last draws (JSON-able) or None."""

    def __init__(self, cfg: SynthScarCfg | None = None, seed: int | None = None) -> None:
        self.cfg = cfg or SynthScarCfg()
        super().__init__(prob=self.cfg.prob)
        self.R: np.random.Generator = np.random.default_rng(seed)
        self.params: dict | None = None
        self._region: np.ndarray | None = None

    def set_random_state(self, seed: int | None = None, state: np.random.Generator | None = None) -> RandSyntheticScar:
        """Reseed ``self.R`` from ``seed``, or adopt ``state`` (a Generator; a RandomState seeds a new Generator)."""
        if seed is not None:
            self.R = np.random.default_rng(int(seed) % (2**63))
        elif isinstance(state, np.random.Generator):
            self.R = state
        elif isinstance(state, np.random.RandomState):
            self.R = np.random.default_rng(int(state.randint(0, 2**31 - 1)))
        elif state is not None:
            raise TypeError(f"state must be a numpy Generator or RandomState, got {type(state).__name__}")
        else:
            self.R = np.random.default_rng()
        return self

    def randomize(self, data: dict | None = None) -> None:
        """Draw apply-or-not (lambda) and, for an eligible slice in ``data``, the scar parameters."""
        if data is None:
            self._do_transform = bool(self.R.random() < self.prob)
            self.params, self._region = None, None
            return
        self._do_transform, self.params, self._region = draw_for_dict(data, self.R, self.cfg)

    def __call__(self, data: dict, randomize: bool = True) -> dict:
        if randomize:
            self.randomize(data)
        if not self._do_transform:
            return apply_to_dict(data, None, None, self.cfg)
        return apply_to_dict(data, self.params, self._region, self.cfg)
