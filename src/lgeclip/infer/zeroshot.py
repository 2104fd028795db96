"""A predictor rebuilt from a run folder: native slice -> anatomy -> preprocessing -> P(LGE).

The run folder is enough: ``config.yaml`` + ``model.safetensors`` rebuild the model, ``inference.json``
(written by ``train_clip``) names the anatomy runs and holds the preprocessing settings the training cache was
built with. Older runs without it fall back to the cache recorded in ``config.yaml``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lgeclip.anatomy.types import AnatomyResult
from lgeclip.config import from_dict
from lgeclip.data.clip import model_image, model_labels
from lgeclip.infer.multilabel import ASK_METHODS, ask
from lgeclip.infer.segments import BAND_MM, DEFAULT_METHOD, RegionMaps, localise
from lgeclip.models.zeroshot import ZeroShotClassifier
from lgeclip.preprocess.chain import ImplausibleSlice, PreprocessedSlice, preprocess_slice, stack_consistent
from lgeclip.preprocess.config import PreprocessCfg, drop_legacy_keys
from lgeclip.train.clip import ClipTrainCfg, load_run_model


def run_provenance(run: str | Path) -> dict:
    """``{"seg_run", "landmarks_run", "preprocess"}`` of a run folder (``inference.json``, else its cache)."""
    import yaml

    run = Path(run)
    info = run / "inference.json"
    if info.is_file():
        prov = json.loads(info.read_text())
        prov["preprocess"] = drop_legacy_keys(prov["preprocess"])
        return prov
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run}: no config.yaml (not a training run folder)")
    cache = yaml.safe_load(cfg_path.read_text())["task"].get("cache")
    meta = Path(cache or "") / "cache.json"
    if not cache or not meta.is_file():
        raise FileNotFoundError(f"{run}: no inference.json and its training cache ({cache}) is gone: pass the "
                                f"anatomy runs and preprocessing settings explicitly")
    m = json.loads(meta.read_text())
    return {"seg_run": m.get("seg_run"), "landmarks_run": m.get("landmarks_run"),
            "preprocess": drop_legacy_keys(m["settings"])}


def _file_hash(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256 (identifies the exact weights / config a prediction used)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class SliceScore:
    """One scored slice: P(LGE) or the reason it could not be scored, and its preprocessed form."""

    level: str
    p_lge: float | None
    reason: str | None = None
    pre: PreprocessedSlice | None = None
    image: np.ndarray | None = None  # the model input it was scored on


class Predictor:
    """P(LGE) for native slices: zero-shot prompts (CLIP runs) or the classifier's sigmoid (image-only runs)."""

    def __init__(self, cfg: ClipTrainCfg, model: nn.Module, preprocess: PreprocessCfg, anatomy=None,
                 device: str | torch.device = "cpu", model_id: str = "", config_id: str = "") -> None:
        self.cfg, self.model, self.preprocess_cfg, self.anatomy = cfg, model.eval(), preprocess, anatomy
        self.device = torch.device(device)
        self.zero_shot = ZeroShotClassifier(model, prompts=cfg.eval.prompts) if cfg.task == "clip" else None
        self.model_id, self.config_id = model_id, config_id  # content hashes of the run's weights and config

    @classmethod
    def from_run_dir(cls, run: str | Path, seg_run: str | Path | None = None,
                     landmarks_run: str | Path | None = None, device: str | None = None,
                     with_anatomy: bool = True) -> Predictor:
        """Rebuild the predictor of a training run (anatomy runs from its provenance unless given)."""
        run = Path(run)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg, model = load_run_model(run, device)
        prov = run_provenance(run)
        pre = from_dict(PreprocessCfg, prov["preprocess"], "preprocess")
        anatomy = None
        if with_anatomy:
            seg, lm = seg_run or prov.get("seg_run"), landmarks_run or prov.get("landmarks_run")
            if not seg or not lm:
                raise ValueError(f"{run}: its cache was built from truth anatomy (oracle): pass seg_run and "
                                 f"landmarks_run to predict on new studies")
            from lgeclip.anatomy.predictor import AnatomyPredictor

            anatomy = AnatomyPredictor.from_run_dirs(Path(seg), Path(lm), device=device, tta=pre.seg_tta,
                                                     bf16=pre.anatomy_bf16)
        return cls(cfg, model, pre, anatomy, device, model_id=_file_hash(run / "model.safetensors"),
                   config_id=_file_hash(run / "config.yaml"))

    @torch.no_grad()
    def score_images(self, images: np.ndarray | torch.Tensor, levels: list[str], batch_size: int = 32) -> np.ndarray:
        """(B, S, S) or (B, 1, S, S) model-input images in [0, 1] + B levels -> (B,) P(LGE)."""
        x = torch.as_tensor(np.asarray(images, np.float32))
        if x.ndim == 3:
            x = x[:, None]
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(self.device)
            if self.zero_shot is not None:
                p = self.zero_shot(xb, levels[i:i + batch_size])
            else:
                p = torch.sigmoid(self.model(xb)["logits"].float())
            out.append(p.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def model_input(self, pre: PreprocessedSlice) -> np.ndarray:
        """The variant the model was trained on, resized to its input side."""
        maps = pre.oriented if self.cfg.data.orientation else pre.native
        return model_image(maps.image, self.cfg.data.image_size)

    def region_maps(self, s: SliceScore) -> RegionMaps | None:
        """The scored slice's image with its myocardium, AHA and wall-third maps on the model's grid."""
        if s.pre is None or s.image is None:
            return None
        maps = s.pre.oriented if self.cfg.data.orientation else s.pre.native
        size = self.cfg.data.image_size
        px = s.pre.pixel_mm * maps.image.shape[0] / size  # mm per model pixel
        return RegionMaps(s.image, model_labels(maps.myocardium, size), model_labels(maps.aha, size),
                          model_labels(maps.layers, size), s.level, band_px=BAND_MM / px)

    def localise_maps(self, maps: list[RegionMaps], p_slice, method: str = DEFAULT_METHOD) -> list[dict]:
        """Regional answers for slices given as region maps with their P(LGE): by editing the image
        (``infer.segments``: occlude / keep) or by asking in words (``infer.multilabel``: prompts / caption, CLIP
        runs only). Slices without a segment map get a ``reason``."""
        if method not in ASK_METHODS:
            return localise(self.score_images, maps, p_slice, method=method)
        if not maps:
            return []
        if self.zero_shot is None:
            raise ValueError(f"method {method!r} asks in words: it needs a CLIP run, not {self.cfg.task!r}")
        got = ask(self.model, np.stack([m.image for m in maps]), [m.level for m in maps], p_slice, method=method)
        for g, m in zip(got, maps, strict=True):
            if not any(kind == "segment" for kind, _, _ in m.regions()):
                g.update(segments={}, depth={}, reason="no AHA segment map (RVIPs unusable: slice not oriented)")
        return got

    def localise(self, scores: list[SliceScore], method: str = DEFAULT_METHOD) -> list[dict | None]:
        """Regional answers (``localise_maps``) for scored slices; None for slices not scored."""
        idx = [i for i, s in enumerate(scores) if s.p_lge is not None and s.pre is not None]
        got = self.localise_maps([self.region_maps(scores[i]) for i in idx],  # type: ignore[misc]
                                 [scores[i].p_lge for i in idx], method=method)
        out: list[dict | None] = [None] * len(scores)
        for i, g in zip(idx, got, strict=True):
            out[i] = g
        return out

    def predict_slices(self, items: list[tuple[np.ndarray, tuple[float, float], str]],
                       anatomies: list[AnatomyResult | None] | None = None) -> list[SliceScore]:
        """Score native slices ``(image, spacing_mm, level)``; anatomy from the nets unless given (then the items
        are taken as one stack in order, for ``rvip_stack_max_dev_deg``).

        A slice whose anatomy or preprocessing fails gets ``p_lge=None`` and the reason; the others are scored."""
        if anatomies is None:
            if self.anatomy is None:
                raise ValueError("predict_slices: no anatomy predictor (built with with_anatomy=False)")
            anatomies = self.anatomy.predict_batch([(im, sp) for im, sp, _ in items],
                                                   names=[f"slice {i}" for i in range(len(items))], errors="none")
            # the items are one series' stack, in order: its RVIPs can be made consistent along it
            anatomies, _ = stack_consistent(anatomies, [sp for _, sp, _ in items], [0] * len(items),
                                            list(range(len(items))), self.preprocess_cfg)
        scores: list[SliceScore] = []
        for (img, sp, level), anat in zip(items, anatomies, strict=True):
            if anat is None:
                scores.append(SliceScore(level, None, "no LV found by the segmentation net"))
                continue
            try:
                scores.append(SliceScore(level, None, None, preprocess_slice(img, sp, anat, self.preprocess_cfg,
                                                                             level=level)))
            except ImplausibleSlice as e:
                scores.append(SliceScore(level, None, f"implausible anatomy: {e.reason}"))
        ok = [s for s in scores if s.pre is not None]
        for s in ok:
            s.image = self.model_input(s.pre)
        if ok:
            p = self.score_images(np.stack([s.image for s in ok]), [s.level for s in ok])
            for s, pi in zip(ok, p, strict=True):
                s.p_lge = float(pi)
        return scores
