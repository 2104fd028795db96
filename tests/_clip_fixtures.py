"""Shared helpers for tests of the text-supervised layer: a tiny preprocessed cache and a tiny text model.

``make_tiny_cache(tmp_path, n_patients, size, seed)`` writes a cohort of synthetic LV rings (native 1 mm grid,
random LV rotation so orientation normalisation has work to do, truth myocardium / blood pool / RVIPs, a bright
scar in one wall of every slice of report-positive patients) and builds the cache with ``oracle=True``.
Report sentences use the words of the zero-shot prompts, so a tiny randomly initialised BERT can transfer.

``make_tiny_text_model(tmp_path)`` saves a random 2-layer BERT (hidden 32) + a word-level tokenizer whose vocabulary
covers the fixture sentences, the prompts and the synthetic-scar templates; pass its folder as
``model.text_model=<folder>``.

``train_tiny_run(root)`` trains the smoke recipe on both for 2 steps. ``RingAnatomy`` stands in for the anatomy
nets of a predictor (a 25 mm LV ring at the image centre).

Run as a script (``torchrun --nproc_per_node=2 tests/_clip_fixtures.py ddp CACHE TEXT_MODEL OUT``) it is the
worker of the 2-process DDP test: it trains the smoke recipe and every rank saves its final weights.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

LEVELS = ("basal", "mid", "apical")
WALLS = ("anterior", "anteroseptal", "inferoseptal", "inferior", "inferolateral", "anterolateral")
POSITIVE_SENTENCES = (
    "there is hyperenhancement in the {wall} wall.",
    "there is subendocardial hyperenhancement in the {wall} wall.",
    "there is transmural hyperenhancement in the {wall} myocardium.",
)
NEGATIVE_SENTENCES = (
    "there is no hyperenhancement in the myocardium.",
    "there is no hyperenhancement.",
)
# tiny-cache defaults: 64 px crop on a 1 mm grid (64 mm field), rings of radius ~13 mm + ~7 mm wall
NATIVE_SHAPE = (84, 84)


def _ring_slice(rng: np.random.Generator, scar: bool, rot_deg: float) -> dict:
    """One native slice (1 mm pixels): image (x1000, like raw values), truth masks, RVIPs, scar (wall index)."""
    h, w = NATIVE_SHAPE
    center = (h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3))
    r_in = rng.uniform(11.0, 14.0)
    r_out = r_in + rng.uniform(6.0, 8.0)
    rr, cc = np.mgrid[:h, :w].astype(np.float32)
    dist = np.hypot(rr - center[0], cc - center[1])
    myo = (dist >= r_in) & (dist < r_out)
    pool = dist < r_in
    # display angle (deg, counter-clockwise from +col, row down); anatomy frame rotated by rot_deg
    theta = (np.degrees(np.arctan2(-(rr - center[0]), cc - center[1])) - rot_deg) % 360.0
    ant, inf = 120.0 + rot_deg, 240.0 + rot_deg  # RVIPs on the epicardium (septum towards the image's left)
    rvip = np.array([[center[0] - r_out * np.sin(np.radians(a)), center[1] + r_out * np.cos(np.radians(a))]
                     for a in (ant, inf)], np.float32)
    img = 0.3 + 0.08 * np.sin(rr / 6.0 + rng.uniform(0, 6)) * np.cos(cc / 5.0)
    img = np.where(pool, 0.75, np.where(myo, 0.08, img))
    wall = -1
    scar_mask = np.zeros((h, w), bool)
    if scar:  # one AHA-like 60 deg sector, inner 2/3 of the wall, nearly as bright as the pool's max
        wall = int(rng.integers(len(WALLS)))
        start = (60.0 + 60.0 * wall) % 360.0  # sector order follows the AHA numbering from the anterior wall
        in_sector = ((theta - start) % 360.0) < 60.0
        scar_mask = myo & in_sector & (dist < r_in + 0.7 * (r_out - r_in))
        img = np.where(scar_mask, 1.0, img)
    img = img + rng.normal(0.0, 0.03, img.shape)
    return {"image": (np.clip(img, 0, None) * 1000.0).astype(np.float32), "myocardium": myo.astype(np.uint8),
            "blood_pool": pool.astype(np.uint8), "rvip": rvip, "scar": scar_mask.astype(np.uint8), "wall": wall}


def make_tiny_cohort(root: Path, n_patients: int = 12, seed: int = 0, positive_fraction: float = 0.5) -> Path:
    """A cohort folder (manifest + slice npz with truth) of ``n_patients`` x 3 ring slices; half report-positive."""
    from lgeclip.io.cohort import SliceRecord, save_slice, write_manifest

    root = Path(root)
    rng = np.random.default_rng(seed)
    n_pos = int(round(positive_fraction * n_patients))
    positive = rng.permutation([True] * n_pos + [False] * (n_patients - n_pos))
    records = []
    for p in range(n_patients):
        key = f"pt-{seed:04d}{p:08d}"
        rot = float(rng.uniform(-60, 60))
        walls = set()
        slices = []
        for idx, level in enumerate(LEVELS):
            s = _ring_slice(rng, bool(positive[p]), rot)
            walls.add(s["wall"])
            slices.append((idx, level, s))
        if positive[p]:
            sentences = [str(rng.choice(POSITIVE_SENTENCES)).format(wall=WALLS[w]) for w in sorted(walls)]
        else:
            sentences = [str(rng.choice(NEGATIVE_SENTENCES))]
        for idx, level, s in slices:
            rel = f"slices/{key}/{idx}.npz"
            save_slice(root / rel, s["image"], (1.0, 1.0), myocardium=s["myocardium"], blood_pool=s["blood_pool"],
                       rvip=s["rvip"], scar=s["scar"])
            records.append(SliceRecord(key, level, idx, 3, rel, (1.0, 1.0), sentences,
                                       "positive" if positive[p] else "negative", "phantom", True,
                                       int(bool(positive[p])),
                                       ("ischaemic" if p % 2 else "mid-wall") if positive[p] else ""))
    write_manifest(root, records)
    return root


def make_tiny_cache(tmp_path: Path, n_patients: int = 12, size: int = 64, seed: int = 0, n_folds: int = 5,
                    val_fraction: float = 0.125) -> Path:
    """A preprocessed cache (``build_cache(..., oracle=True)``, fold 0) of a tiny ring cohort at ``size`` px (1 mm
    pixels), whose cohort ``splits.json`` has ``n_folds`` folds and ``val_fraction`` (split seed ``seed``).

    Returns the cache folder under ``tmp_path`` (re-used when it already exists)."""
    from lgeclip.io.splits import ensure_splits
    from lgeclip.preprocess.cache import build_cache

    tmp_path = Path(tmp_path)
    tag = f"{n_patients}_{seed}_{n_folds}_{val_fraction}"
    out = tmp_path / f"cache_{tag}_{size}"
    if (out / "index.csv").is_file():
        return out
    cohort = make_tiny_cohort(tmp_path / f"cohort_{tag}", n_patients, seed)
    ensure_splits(cohort, n_folds=n_folds, seed=seed, val_fraction=val_fraction)
    summary = build_cache(cohort, None, None, out, oracle=True, overrides=[f"crop={size}", "upsample=1"])
    if summary["n_excluded"]:
        raise RuntimeError(f"tiny cache excluded {summary['n_excluded']} slices: see {out / 'excluded.csv'}")
    return out


def _vocabulary() -> list[str]:
    from lgeclip.models.zeroshot import NEGATIVE_PROMPT, POSITIVE_PROMPT
    from lgeclip.synth.config import EXTENT_LAYERS, SynthScarCfg
    from lgeclip.synth.templates import ENHANCEMENT_WORDS, TEMPLATES, level_suffix

    texts = [*POSITIVE_SENTENCES, *NEGATIVE_SENTENCES, POSITIVE_PROMPT, NEGATIVE_PROMPT, *TEMPLATES,
             *ENHANCEMENT_WORDS, *EXTENT_LAYERS, *SynthScarCfg().locations, *WALLS,
             *(level_suffix(lv) for lv in LEVELS)]
    words: list[str] = []
    for t in texts:
        for w in re.findall(r"[a-z]+|[^\sa-z]", t.lower().replace("{", " ").replace("}", " ")):
            if w not in words:
                words.append(w)
    return words


def make_tiny_text_model(tmp_path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """Folder with a random tiny ``BertModel`` + ``BertTokenizer`` (loadable offline with AutoModel/AutoTokenizer)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(tmp_path) / "tiny_bert"
    if (folder / "config.json").is_file():
        return str(folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_vocabulary()]
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=64)).save_pretrained(folder)
    torch.random.set_rng_state(state)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return str(folder)


def tiny_overrides(text_model: str, image_size: int = 64, **extra) -> list[str]:
    """Dotted overrides that shrink a recipe to test size (tiny text model, small projection and decoder)."""
    over = {
        "model.text_model": text_model, "model.embed_dim": 32, "model.decoder_width": 32, "model.decoder_heads": 2,
        "model.decoder_layers": 1, "model.text_max_length": 32, "model.vision_init": "random",
        "classifier.embed_dim": 32, "classifier.vision_init": "random", "data.image_size": image_size,
        "loop.device": "cpu", "loop.log_every": 0, "loop.num_workers": 0,
    }
    over.update(extra)
    return [f"{k}={v}" for k, v in over.items()]


def _ddp_worker(cache: str, text_model: str, out: str) -> None:
    """Train the smoke recipe under torchrun; every rank saves its final weights as ``out/rank<r>.safetensors``."""
    import os

    import torch

    from lgeclip.train.clip import ClipTask, load_train_config
    from lgeclip.train.loop import fit
    from lgeclip.utils import save_tensors

    torch.set_num_threads(1)
    os.environ["LGECLIP_NO_PROGRESS"] = "1"
    cfg = load_train_config("smoke", tiny_overrides(text_model, 32, **{"loop.batch_size": 8, "loop.epochs": 2,
                                                                       "loop.max_steps": 0}), cache)
    holder: dict = {}

    class RecordingTask(ClipTask):
        def build_model(self):
            holder["model"] = super().build_model()
            return holder["model"]

    summary = fit(RecordingTask(cfg, cache), cfg.loop, out)
    rank = int(os.environ.get("RANK", "0"))
    state = {k: v.detach().cpu().contiguous() for k, v in holder["model"].state_dict().items()}
    save_tensors(Path(out) / f"rank{rank}.safetensors", state)
    print(f"rank {rank} done: {summary['steps']} steps", flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip process-group teardown (aborts ~1 in 4 gloo runs here, see ENVIRONMENT.md)


def train_tiny_run(root: Path) -> dict:
    """A tiny cache (10 ring patients, 64 px), a tiny text model and a 2-step smoke training of it under ``root``;
    returns {"root", "cache", "run"}."""
    from lgeclip.train.clip import train_clip

    cache = make_tiny_cache(root, n_patients=10, size=64, seed=3, n_folds=3, val_fraction=0.34)
    text = make_tiny_text_model(root)
    run = root / "run"
    train_clip("smoke", cache, run, overrides=tiny_overrides(text, 32, **{"loop.max_steps": 2, "loop.epochs": 1,
                                                                          "loop.batch_size": 4}))
    return {"root": root, "cache": cache, "run": run}


class RingAnatomy:
    """Stand-in anatomy predictor: a 25 mm LV ring at the image centre; None (no LV) for images it is told to drop."""

    def __init__(self, drop_constant: bool = True) -> None:
        self.drop_constant = drop_constant
        self.calls = 0

    def predict_batch(self, items, names=None, errors="raise"):
        from lgeclip.anatomy.types import AnatomyResult

        out = []
        for img, sp in items:
            self.calls += 1
            if self.drop_constant and np.ptp(img) == 0:
                out.append(None)
                continue
            h, w = img.shape
            rr, cc = np.mgrid[:h, :w]
            c = ((h - 1) / 2, (w - 1) / 2)
            d = np.hypot((rr - c[0]) * sp[0], (cc - c[1]) * sp[1])
            myo = ((d >= 20) & (d < 28)).astype(np.uint8)
            pool = (d < 20).astype(np.uint8)
            ant = (c[0] - 27 / sp[0] * np.sin(np.radians(120)), c[1] + 27 / sp[1] * np.cos(np.radians(120)))
            inf = (c[0] - 27 / sp[0] * np.sin(np.radians(240)), c[1] + 27 / sp[1] * np.cos(np.radians(240)))
            out.append(AnatomyResult(myo, pool, ant, inf))
        return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "ddp":
        _ddp_worker(*sys.argv[2:])
    else:
        raise SystemExit("usage: _clip_fixtures.py ddp CACHE TEXT_MODEL OUT")
