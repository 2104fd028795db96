"""(LGE slice, report sentence) pairs for text-supervised training, and labelled slices for the baseline.

Each item draws its randomness from ``np.random.default_rng([seed, epoch, index])`` so that the sequence of
items does not depend on DataLoader workers, DDP ranks or on resuming: a resumed run replays the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from lgeclip.report.augment import augment_sentence
from lgeclip.synth import SynthScarCfg
from lgeclip.synth.templates import draw_negative_sentence, level_suffix, split_level_suffix

LABEL_CODE = {"positive": 1, "negative": 0, "unknown": -1}


@dataclass
class AugmentCfg:
    """Light, orientation-preserving augmentation (the orientation normalisation is a feature, not noise)."""

    enabled: bool = True
    gamma: tuple[float, float] = (0.8, 1.25)  # intensity gamma range
    scale: tuple[float, float] = (0.9, 1.1)  # intensity scale range (clipped back to [0, 1])
    noise_std: float = 0.02  # additive Gaussian noise, in units of the [0, 1] range
    max_shift_px: int = 4  # random translation of the crop, pixels

    def __post_init__(self) -> None:
        if not (0 < self.gamma[0] <= self.gamma[1]) or not (0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"augment ranges must be positive and ordered: gamma={self.gamma}, scale={self.scale}")
        if self.noise_std < 0 or self.max_shift_px < 0:
            raise ValueError("augment noise_std and max_shift_px must be >= 0")


@dataclass
class DataCfg:
    """How cached slices become training items."""

    image_size: int = 112  # model input; 224 = the paper's x2 upsampling of the 112 mm crop
    orientation: bool = True  # use the orientation-normalised variant of the cache (False: ablation)
    synth_enabled: bool = True  # synthetic scar on report-negative slices (False: ablation)
    synth: SynthScarCfg = field(default_factory=SynthScarCfg)
    # chance that a report-negative slice left without synthetic scar is captioned with a negated template sentence
    # (synth.templates.NEGATIVE_TEMPLATES) instead of its report sentence; 0 = the paper
    negative_template_prob: float = 0.0
    # which report sentences may caption a slice: "all" LGE sentences (the paper), or "status": only those that
    # say whether there is myocardial enhancement (lgeclip.report.lge.sentence_status positive, negative or
    # uncertain), so a side sentence such as "No microvascular obstruction." never captions a scar image alone
    # (all are kept if none says it). A text rule on the sentence, not the report label.
    caption_sentences: str = "all"
    # which of those sentences may caption a slice of a given level: "all" (the paper), or "match": where the
    # report's enhancement sentences name levels (lgeclip.report.levels), a slice takes only the sentences that name
    # its level, and a slice whose level none of them names counts as report-negative at that level (it may get a
    # synthetic scar, and otherwise a negated template). Without it a third of the slices of report-positive
    # patients are clean myocardium captioned "scar". A text rule: the report's words and the slice's level only.
    caption_levels: str = "all"
    # chance that a training caption's sentence is reworded by rules that keep its finding (report.augment: other
    # enhancement terms, number formats, spellings / abbreviations, clause order; PMC-MSA's language augmentation)
    language_aug_prob: float = 0.0
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    val_split: str = "val"

    def __post_init__(self) -> None:
        if self.image_size % 16 or self.image_size < 32:
            raise ValueError(f"image_size must be a multiple of 16 and >= 32, got {self.image_size}")
        if self.caption_sentences not in ("all", "status"):
            raise ValueError(f"caption_sentences must be all|status, got {self.caption_sentences!r}")
        if self.caption_levels not in ("all", "match"):
            raise ValueError(f"caption_levels must be all|match, got {self.caption_levels!r}")
        if not 0.0 <= self.negative_template_prob <= 1.0:
            raise ValueError(f"negative_template_prob must be in [0, 1], got {self.negative_template_prob}")
        if not 0.0 <= self.language_aug_prob <= 1.0:
            raise ValueError(f"language_aug_prob must be in [0, 1], got {self.language_aug_prob}")


def _resize(arr: np.ndarray, size: int, order: int) -> np.ndarray:
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    zoom = (size / arr.shape[0], size / arr.shape[1])
    return ndimage.zoom(arr, zoom, order=order, mode="nearest", grid_mode=True)


def model_image(image: np.ndarray, image_size: int) -> np.ndarray:
    """A preprocessed [0, 1] image resized to the model input side (the same resize in training and inference)."""
    return _resize(np.asarray(image, np.float32), image_size, 1).clip(0, 1)


def model_labels(labels: np.ndarray, image_size: int) -> np.ndarray:
    """A label / mask map of the preprocessed grid resized (nearest) to the model input side, like ``model_image``."""
    return _resize(np.asarray(labels).astype(np.uint8), image_size, 0)


class SliceStore:
    """All cached slices of some records loaded once into memory at the model's input size."""

    KEYS = ("image", "myocardium", "aha", "layers", "thickness")

    def __init__(self, records: list, image_size: int, oriented: bool) -> None:
        from lgeclip.preprocess.cache import load_cached_slice

        self.records = records
        self.items: list[dict] = []
        for r in records:
            d = load_cached_slice(r.path, oriented=oriented)
            src = d["image"].shape[0]
            out = {
                "image": model_image(d["image"], image_size),
                "myocardium": _resize(d["myocardium"].astype(np.uint8), image_size, 0),
                "aha": _resize(d["aha"].astype(np.uint8), image_size, 0),
                "layers": _resize(d["layers"].astype(np.uint8), image_size, 0),
                "thickness": _resize(d["thickness"].astype(np.float32), image_size, 0),
                "pixel_mm": float(d["pixel_mm"]) * src / image_size,
            }
            self.items.append(out)

    def __len__(self) -> int:
        return len(self.items)


def caption_sentences(sentences: list[str], rule: str = "all") -> list[str]:
    """The report sentences that may caption a slice under ``rule`` (see ``DataCfg.caption_sentences``)."""
    if rule == "all" or not sentences:
        return list(sentences)
    from lgeclip.report.lge import sentence_status

    kept = [s for s in sentences if sentence_status(s) in ("positive", "negative", "uncertain")]
    return kept or list(sentences)


def level_captions(sentences: list[str], level: str, label: str) -> tuple[list[str], str]:
    """``(sentences, label)`` for one slice under ``caption_levels: match`` (see ``DataCfg.caption_levels``).

    A report-positive slice keeps the sentences that name its level (plus those naming no level when no sentence
    names it: nothing to match); when enhancement sentences name levels but none names this one, the slice is
    report-negative at its level: ``([], "negative")``. Other labels pass unchanged."""
    if label != "positive" or not sentences:
        return list(sentences), label
    from lgeclip.report.levels import sentence_levels
    from lgeclip.report.lge import sentence_status

    named = [(s, sentence_levels(s)) for s in sentences]
    located = [(s, lv) for s, lv in named if lv is not None and sentence_status(s) == "positive"]
    if not located:
        return list(sentences), label
    here = [s for s, lv in located if level in lv]
    return (here, label) if here else ([], "negative")


def caption_corpus(records: list, cfg: DataCfg) -> tuple[list[str], list[str], list[float]]:
    """The report captions training can draw: ``(captions, levels, weights)``, every sentence a training slice
    may take under ``cfg`` (with its level suffix), weighted 1 / (number of sentences of that slice). Text only."""
    captions, levels, weights = [], [], []
    for r in records:
        if not r.sentences:
            continue
        sents = caption_sentences(r.sentences, cfg.caption_sentences)
        if cfg.caption_levels == "match":
            sents, _ = level_captions(sents, r.level, r.label)
        for sent in sents:
            captions.append(f"{sent} {level_suffix(r.level)}")
            levels.append(r.level)
            weights.append(1.0 / len(sents))
    return captions, levels, weights


def training_transform(cfg: DataCfg):
    """The one chain every training item goes through (MONAI dict transforms on ``{"image": (1, S, S), ...}``):
    synthetic scar + its sentence on report-negative slices (``RandSyntheticScar``, lambda = ``cfg.synth.prob``,
    when ``cfg.synth_enabled``), then the light augmentation of ``cfg.augment``: intensity gamma and scale, a
    translation whose uncovered border repeats the edge pixels (no wrap-around), Gaussian noise, clip to [0, 1].
    Reseed it per item with ``set_random_state(seed=...)``."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandGaussianNoised,
        RandScaleIntensityd,
        ScaleIntensityRanged,
    )

    from lgeclip.synth.transform import RandSyntheticScar

    chain: list = [RandSyntheticScar(cfg.synth)] if cfg.synth_enabled else []
    a = cfg.augment
    if a.enabled:
        chain += [RandAdjustContrastd("image", prob=1.0, gamma=tuple(a.gamma)),
                  RandScaleIntensityd("image", factors=(a.scale[0] - 1.0, a.scale[1] - 1.0), prob=1.0)]
        if a.max_shift_px:
            chain.append(RandAffined("image", prob=1.0, translate_range=(a.max_shift_px, a.max_shift_px),
                                     mode="bilinear", padding_mode="border"))
        if a.noise_std:
            chain.append(RandGaussianNoised("image", prob=1.0, std=a.noise_std, sample_std=False))
        chain.append(ScaleIntensityRanged("image", 0.0, 1.0, 0.0, 1.0, clip=True))
    return Compose(chain)


def _plain(x) -> np.ndarray:
    """A MONAI MetaTensor / tensor / array as a float32 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        return x.detach().cpu().numpy().astype(np.float32, copy=False)
    return np.asarray(x, np.float32)


class ClipPairs(Dataset):
    """Items ``{"image": (1, S, S), "caption": str, "label": int, "synthetic": bool, "level", "slice_id"}``.

    Training items (``train=True``): one LGE sentence drawn from the patient's report sentences (those allowed by
    ``cfg.caption_sentences``), plus "This image is from <level> level."; then ``training_transform``: a
    report-negative slice gets a synthetic scar and its generated sentence (which ends with the level sentence)
    with probability ``cfg.synth.prob`` when ``cfg.synth_enabled``, and the light augmentation; a report-negative
    slice left clean is captioned with a negated template with probability ``cfg.negative_template_prob``.
    Every draw of item ``index`` comes from ``default_rng([seed, epoch, index])``.
    With ``require_caption`` (CLIP training) slices whose report has no LGE sentence are left out: they have no
    text to pair with. Evaluation items (``train=False``) keep every record and are neither synthesised nor
    augmented; their caption is the report sentence drawn as above (unused by zero-shot scoring).
    """

    def __init__(self, records: list, cfg: DataCfg, train: bool, seed: int = 0, require_caption: bool = True) -> None:
        self.records = [r for r in records if r.sentences] if train and require_caption else list(records)
        self.sentences = [caption_sentences(r.sentences, cfg.caption_sentences) for r in self.records]
        # the report label as training sees it: per level under caption_levels=match (a text rule)
        self.labels = [r.label for r in self.records]
        if train and cfg.caption_levels == "match":
            pairs = [level_captions(s, r.level, r.label) for s, r in zip(self.sentences, self.records, strict=True)]
            self.sentences = [p[0] for p in pairs]
            self.labels = [p[1] for p in pairs]
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.store = SliceStore(self.records, cfg.image_size, cfg.orientation)
        self.transform = training_transform(cfg) if train else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        s = self.store.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = s["image"]
        sentences, label = self.sentences[index], self.labels[index]
        caption = sentences[int(rng.integers(len(sentences)))] + " " + level_suffix(r.level) if sentences \
            else level_suffix(r.level)
        synthetic = False
        if self.train:
            data = {"image": image[None], "myocardium": s["myocardium"], "aha": s["aha"], "layers": s["layers"],
                    "thickness": s["thickness"], "level": r.level, "label": label, "pixel_mm": s["pixel_mm"],
                    "caption": caption}
            self.transform.set_random_state(seed=int(rng.integers(2**31)))
            data = self.transform(data)
            image, caption, synthetic = _plain(data["image"])[0], data["caption"], bool(data.get("synthetic"))
            # drawn only when enabled, so runs without it keep their random streams
            if (self.cfg.negative_template_prob > 0 and label == "negative" and not synthetic
                    and rng.random() < self.cfg.negative_template_prob):
                caption = draw_negative_sentence(rng, r.level)
            elif label == "negative" and not synthetic and not sentences:
                # negative at its level only (caption_levels=match): the report has no sentence that says so
                caption = draw_negative_sentence(rng, r.level)
            # drawn only when enabled, like the templates above
            if self.cfg.language_aug_prob > 0 and rng.random() < self.cfg.language_aug_prob:
                body, suffix = split_level_suffix(caption)
                caption = (augment_sentence(body.strip(), rng) + " " + suffix).strip()
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "caption": caption,
            "label": LABEL_CODE[label if self.train else r.label],  # training: the label the text gives this level
            "synthetic": synthetic,
            "level": r.level,
            "slice_id": r.slice_id,
        }


def collate_pairs(items: list[dict]) -> dict:
    """Stack images and labels; keep strings as lists."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "caption": [it["caption"] for it in items],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "synthetic": torch.tensor([it["synthetic"] for it in items], dtype=torch.bool),
        "level": [it["level"] for it in items],
        "slice_id": [it["slice_id"] for it in items],
    }
