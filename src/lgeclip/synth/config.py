"""`SynthScarCfg`: every constant of the synthetic scar augmentation, validated on creation."""

from __future__ import annotations

from dataclasses import dataclass

# Myocardial layers (values of the layer map): 1 endo (subendocardial) / 2 mid / 3 epi thirds of the wall.
EXTENT_LAYERS: dict[str, tuple[int, ...]] = {
    "subendocardial": (1,),
    "mid-myocardial": (2,),
    "epicardial": (3,),
    "subendocardial and mid-myocardial": (1, 2),
    "mid-myocardial and epicardial": (2, 3),
    "transmural": (1, 2, 3),
}

# Prefix form of a first-set wall word in a combined location ("anterior" + "lateral" -> "anterolateral").
_PREFIX = {"anterior": "antero", "inferior": "infero", "posterior": "postero"}


def combine_walls(first: str, second: str) -> str:
    """One combined wall word: ("inferior", "septal") -> "inferoseptal"."""
    return _PREFIX.get(first, first.removesuffix("ior") + "o") + second


@dataclass
class SynthScarCfg:
    """Synthetic scar image-text augmentation (paper: controller -> AHA x layer region -> ellipse -> blend -> text)."""

    prob: float = 0.7  # lambda: chance of applying to an eligible (report-negative) slice
    walls_a: tuple[str, ...] = ("anterior", "inferior", "posterior")  # first wall-word set
    walls_b: tuple[str, ...] = ("lateral", "septal")  # second wall-word set
    combine: bool = True  # also draw one word of each set combined ("inferoseptal", "anterolateral", ...)
    # Never drawn: "posterior" is the old name of the inferolateral wall, so "posteroseptal" contradicts itself.
    exclude_locations: tuple[str, ...] = ("posteroseptal",)
    extents: tuple[str, ...] = tuple(EXTENT_LAYERS)  # extents drawn uniformly (keys of EXTENT_LAYERS)
    # Ellipse radii as fractions rho of the local wall thickness, r ~ U(max(0.01, th*rho_min), th*rho_max).
    rho_single: tuple[float, float] = (0.1, 0.4)  # one layer
    rho_double: tuple[float, float] = (0.3, 0.6)  # two layers
    # Transmural. The paper prints "[0.7, 0.1]": a misprint, since rho_max must exceed rho_min; we use [0.7, 1.0].
    rho_transmural: tuple[float, float] = (0.7, 1.0)
    r_floor: float = 0.01  # smallest radius in pixels
    s1: float = 2.0  # Gaussian sigma = U(0, 1) * s1 + s2 (pixels)
    s2: float = 2.0
    truncate: float = 4.0  # Gaussian kernel half-width in sigmas (also the crop margin)
    b1: float = 0.8  # blend brightness gamma ~ U(b1, b2), scar intensity = gamma * max(I)
    b2: float = 1.0
    max_redraws: int = 10  # redraws of (location, extent) when the region is empty at this level, then skip
    # beyond the paper: chance that the sentence is location-free ("There is scar in the myocardium.",
    # templates.GENERIC_TEMPLATES), the affirmative twin of the negated templates; 0 = the paper
    generic_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"SynthScarCfg.prob must be in [0, 1], got {self.prob}")
        if not self.walls_a and not self.walls_b:
            raise ValueError("SynthScarCfg: walls_a and walls_b are both empty")
        if self.combine and not (self.walls_a and self.walls_b):
            raise ValueError("SynthScarCfg.combine needs a word in both walls_a and walls_b")
        if not self.locations:
            raise ValueError(f"SynthScarCfg: exclude_locations {list(self.exclude_locations)} removes every location")
        if not self.extents:
            raise ValueError("SynthScarCfg.extents is empty")
        bad = [e for e in self.extents if e not in EXTENT_LAYERS]
        if bad:
            raise ValueError(f"SynthScarCfg.extents: unknown {bad}; known {list(EXTENT_LAYERS)}")
        for name in ("rho_single", "rho_double", "rho_transmural"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi:
                raise ValueError(f"SynthScarCfg.{name}: need 0 <= rho_min < rho_max, got ({lo}, {hi})")
        if self.r_floor <= 0:
            raise ValueError(f"SynthScarCfg.r_floor must be > 0, got {self.r_floor}")
        if self.s1 < 0 or self.s2 < 0 or self.s1 + self.s2 <= 0:
            raise ValueError(f"SynthScarCfg: need s1, s2 >= 0 and s1 + s2 > 0, got s1={self.s1}, s2={self.s2}")
        if self.truncate <= 0:
            raise ValueError(f"SynthScarCfg.truncate must be > 0, got {self.truncate}")
        if not 0.0 < self.b1 <= self.b2:
            raise ValueError(f"SynthScarCfg: need 0 < b1 <= b2, got b1={self.b1}, b2={self.b2}")
        if not 0.0 <= self.generic_prob <= 1.0:
            raise ValueError(f"SynthScarCfg.generic_prob must be in [0, 1], got {self.generic_prob}")
        if self.max_redraws < 0:
            raise ValueError(f"SynthScarCfg.max_redraws must be >= 0, got {self.max_redraws}")

    @property
    def locations(self) -> list[str]:
        """All wall locations the controller draws from (uniformly)."""
        out = list(self.walls_a) + list(self.walls_b)
        if self.combine:
            out += [combine_walls(a, b) for a in self.walls_a for b in self.walls_b]
        return [w for w in out if w not in self.exclude_locations]

    def rho(self, extent: str) -> tuple[float, float]:
        """(rho_min, rho_max) for an extent: by its number of layers."""
        n = len(EXTENT_LAYERS[extent])
        return {1: self.rho_single, 2: self.rho_double, 3: self.rho_transmural}[n]
