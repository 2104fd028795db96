"""``lgeclip evaluate --retrieval``: study-level image <-> report retrieval and few-shot use of study embeddings
(CMRformer's and CMRCLIP's protocols) on held-out patients.

- Study embedding: the mean of the L2-normalised image embeddings of a patient's cached slices, renormalised.
  Report embedding: the mean of the text embeddings of its LGE sentences, each with every level suffix the
  captions carried in training ("This image is from <level> level."), renormalised.
- Retrieval over the split's patients, with reports of identical text (templated negatives: no model can tell
  them apart) as one item: image -> report ranks the distinct reports for each study; report -> image ranks the
  studies for each distinct report, any study with that report text being right. R@1/5/10 (a right answer in the
  top K) and the median rank of the first right answer, with chance beside them (a random order).
- Few-shot: k labelled patients per class drawn from the training split (``draws`` times): a prototype (class-mean
  cosine difference) and an L2-regularised logistic-regression probe on the frozen study embeddings, scored on the
  split's patients by AUROC and balanced accuracy (report label), beside zero-shot (patient P(LGE) under the run's
  aggregation and threshold) on the same patients.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lgeclip.data.clip import model_image
from lgeclip.eval.evaluate import leak_check
from lgeclip.metrics import aggregate, auroc, balanced_accuracy
from lgeclip.preprocess.cache import load_cached_slice
from lgeclip.synth.templates import level_suffix
from lgeclip.train.runs import load_run_model
from lgeclip.train.scoring import split_records
from lgeclip.utils import atomic_write_json

LEVELS = ("basal", "mid", "apical")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def first_relevant_ranks(sim: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best-scored relevant item for each query row of ``sim`` (queries x items);
    ``relevant`` (queries x items, bool) marks the right answers of each query."""
    sim, relevant = np.asarray(sim, float), np.asarray(relevant, bool)
    best = np.where(relevant, sim, -np.inf).max(1, keepdims=True)
    return 1 + ((sim > best) & ~relevant).sum(1)


def chance_recall(n_items: int, n_relevant: np.ndarray, k: int) -> float:
    """Mean P(at least one of m relevant items in the top k) under a random order of n items."""
    from math import comb

    return float(np.mean([1.0 - comb(n_items - m, k) / comb(n_items, k) if k < n_items else 1.0
                          for m in np.asarray(n_relevant, int)]))


def retrieval_metrics(sim: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """R@K (a right answer in the top K), median rank of the first right answer, and chance for both."""
    ranks = first_relevant_ranks(sim, relevant)
    n_items, m = sim.shape[1], np.asarray(relevant, bool).sum(1)
    out: dict = {f"R@{k}": round(float(np.mean(ranks <= k)), 4) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["chance"] = {**{f"R@{k}": round(chance_recall(n_items, m, k), 4) for k in ks},
                     "median_rank": float(np.median((n_items + 1) / (m + 1)))}
    return out


def _prototype_scores(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    mu_p, mu_n = _unit(train_x[train_y].mean(0)), _unit(train_x[~train_y].mean(0))
    return x @ mu_p - x @ mu_n


def _probe_scores(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, c: float = 1.0) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(train_x, train_y)
    return clf.predict_proba(x)[:, 1]


def few_shot_curves(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                    shots: Sequence[int] = (1, 4, 16), draws: int = 20, seed: int = 0) -> dict:
    """Prototype and linear-probe AUROC / balanced accuracy (mean, sd over draws) at k labelled patients per
    class (capped by what the training split holds)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(train_y), np.flatnonzero(~train_y)
    out = {}
    for k in shots:
        kk = min(k, len(pos), len(neg))
        if kk < 1:
            continue
        res: dict[str, dict[str, list]] = {"prototype": {"auroc": [], "balanced_accuracy": []},
                                           "probe": {"auroc": [], "balanced_accuracy": []}}
        for _ in range(draws):
            idx = np.concatenate([rng.choice(pos, kk, replace=False), rng.choice(neg, kk, replace=False)])
            for name, fn, thr in (("prototype", _prototype_scores, 0.0), ("probe", _probe_scores, 0.5)):
                s = fn(train_x[idx], train_y[idx], test_x)
                res[name]["auroc"].append(auroc(test_y, s))
                res[name]["balanced_accuracy"].append(balanced_accuracy(test_y, s >= thr))
        out[str(k)] = {"k_per_class": kk, **{name: {m: {"mean": round(float(np.nanmean(v)), 4),
                                                         "sd": round(float(np.nanstd(v)), 4)}
                                                     for m, v in d.items()} for name, d in res.items()}}
    return out


@torch.no_grad()
def study_table(model, cfg, records: list, device: torch.device | str, batch_size: int = 64) -> dict[str, dict]:
    """Per patient: study embedding, report embedding, report text, label and zero-shot P(LGE) per slice."""
    from lgeclip.models.zeroshot import ZeroShotClassifier

    zs = ZeroShotClassifier(model, prompts=cfg.eval.prompts)
    imgs = [model_image(load_cached_slice(r.path, oriented=cfg.data.orientation)["image"], cfg.data.image_size)
            for r in records]
    emb, p = [], []
    for i in range(0, len(imgs), batch_size):
        x = torch.as_tensor(np.stack(imgs[i:i + batch_size])[:, None]).to(device)
        feats = model.encode_image(x)
        emb.append(feats.float().cpu().numpy())
        p.append(zs.probs_from_features(feats, [r.level for r in records[i:i + batch_size]]).float().cpu().numpy())
    emb_all, p_all = np.concatenate(emb), np.concatenate(p)
    by: dict[str, dict] = {}
    for r, e, pi in zip(records, emb_all, p_all, strict=True):
        d = by.setdefault(r.patient_key, {"label": r.label, "sentences": list(r.sentences), "emb": [], "p": []})
        d["emb"].append(e)
        d["p"].append(float(pi))
    for d in by.values():
        d["study"] = _unit(np.mean(d["emb"], 0))
        d["report_text"] = " ".join(d["sentences"])
        texts = [f"{s} {level_suffix(lv)}" for s in d["sentences"] for lv in LEVELS]
        d["report"] = _unit(model.encode_text(texts).float().cpu().numpy().mean(0)) if texts else None
        d["p_lge"] = aggregate(np.array(d["p"]), cfg.eval.aggregation)
    return by


def evaluate_retrieval(run: str | Path, cache: str | Path, split: str = "test", out: str | Path | None = None,
                       device: str | None = None, shots: Sequence[int] = (1, 4, 16), draws: int = 20,
                       allow_leak: bool = False) -> dict:
    """Retrieval and few-shot numbers of CLIP run ``run`` on the ``split`` patients of ``cache`` (leak-checked;
    the few-shot labels come from the cache's training split); writes ``retrieval.json`` to ``out`` (default
    ``<run>/eval_retrieval_<split>``)."""
    run, cache = Path(run), Path(cache)
    leaks = leak_check(run, cache, split, allow_leak)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg, model = load_run_model(run, device)
    if cfg.task != "clip":
        raise ValueError(f"{run}: retrieval needs a CLIP run (this one is {cfg.task!r}: no text tower)")
    t0 = time.perf_counter()
    test = study_table(model, cfg, split_records(cache, [split]), device)
    train = study_table(model, cfg, split_records(cache, ["train"]), device)
    keys = [k for k, d in sorted(test.items()) if d["report"] is not None]
    if len(keys) < 2:
        raise ValueError(f"{cache}: fewer than 2 patients with a report sentence in split {split!r}")
    texts = sorted({test[k]["report_text"] for k in keys})
    s = np.stack([test[k]["study"] for k in keys])
    r = np.stack([next(test[k]["report"] for k in keys if test[k]["report_text"] == t) for t in texts])
    right = np.array([[test[k]["report_text"] == t for t in texts] for k in keys])  # studies x distinct reports
    sim = s @ r.T
    summary: dict = {"run": str(run.resolve()), "recipe": cfg.name, "cache": str(cache.resolve()), "split": split,
                     "n_patients": len(keys), "n_distinct_reports": len(texts),
                     "study_embedding": "mean of slice embeddings", "report_embedding":
                     "mean of its LGE sentences x level suffixes",
                     "image_to_report": retrieval_metrics(sim, right),
                     "report_to_image": retrieval_metrics(sim.T, right.T)}
    known = [k for k in keys if test[k]["label"] in ("positive", "negative")]
    tr = [k for k, d in sorted(train.items()) if d["label"] in ("positive", "negative")]
    if known and tr:
        ty = np.array([test[k]["label"] == "positive" for k in known])
        tx = np.stack([test[k]["study"] for k in known])
        zp = np.array([test[k]["p_lge"] for k in known])
        summary["zero_shot"] = {"auroc": round(float(auroc(ty, zp)), 4),
                                "balanced_accuracy": round(float(balanced_accuracy(ty, zp >= cfg.eval.threshold)), 4)}
        summary["few_shot"] = few_shot_curves(np.stack([train[k]["study"] for k in tr]),
                                              np.array([train[k]["label"] == "positive" for k in tr]), tx, ty,
                                              shots, draws)
        summary["n_probe_test_patients"] = len(known)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["leak_check"] = leaks
    out = Path(out) if out is not None else run / f"eval_retrieval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "retrieval.json", summary)
    return summary
