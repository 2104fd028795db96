"""Multi-label zero-shot questions asked in words (PMC-MSA's multi-label queries): which wall, how deep, what pattern.

Each question has one or more sentences per answer, written as the reports write them and ending in the level suffix
the model was trained with: location ("There is late gadolinium enhancement of the mid inferior wall.", one per AHA
segment of the slice's level), depth (subendocardial, mid-wall, subepicardial, transmural) and pattern (ischaemic
vs non-ischaemic, two phrasings each). Two ways to ask:

- ``prompts``: contrastive; q(answer) = softmax over the answers of scale x cos(image, sentence);
- ``caption``: generative; q(answer) = softmax over the answers of the CoCa decoder's log-likelihood of the sentence
  given the image's spatial feature map (the decoder attends to where things are; the pooled embedding does not).

An answer with several sentences scores the mean of its sentences' logits (a small prompt ensemble). A region's
score is P(LGE) x q: the slice rule says whether, the question says where, so the scores of a clean slice stay low.
A wall third's score adds the transmural answer to its own. The result has the format of
``infer.segments.localise`` (plus ``pattern``) so ``evaluate --segments`` and the study table take it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lgeclip.infer.segments import DEPTHS, LEVEL_SEGMENTS, SEGMENT_NAMES
from lgeclip.models.decoder import batch_vocabulary, shift_for_captioning
from lgeclip.models.zeroshot import no_autocast
from lgeclip.synth.templates import level_suffix

ASK_METHODS = ("prompts", "caption")

# AHA segments of each level and the wall word a report uses for each (from the segment names)
WALLS_AT_LEVEL: dict[str, tuple[tuple[int, str], ...]] = {
    level: tuple((seg, SEGMENT_NAMES[seg].split(" ", 1)[1]) for seg in segs) for level, segs in LEVEL_SEGMENTS.items()}
LOCATION_TEMPLATE = "There is late gadolinium enhancement of the {level} {wall} wall."
DEPTH_ANSWERS: dict[str, tuple[int, ...]] = {  # answer -> the wall thirds (DEPTHS ids) it covers
    "subendocardial": (1,), "mid-wall": (2,), "subepicardial": (3,), "transmural": (1, 2, 3)}
DEPTH_TEMPLATE = "There is {depth} late gadolinium enhancement."
# the clinical split of a scar's pattern, in the words reports use for it (phantom reports, ESC/SCMR wording)
PATTERN_ANSWERS: dict[str, tuple[str, ...]] = {
    "ischaemic": ("There is late gadolinium enhancement in an ischaemic pattern, in keeping with prior myocardial "
                  "infarction.", "Infarct pattern late gadolinium enhancement in a coronary artery territory."),
    "non-ischaemic": ("There is late gadolinium enhancement in a non-ischaemic pattern.",
                      "Patchy fibrosis typical of a non-ischaemic cardiomyopathy."),
}


def questions(level: str) -> dict[str, list[tuple[object, str]]]:
    """The sentences of each question at ``level``: ``{"location": [(segment, text)], "depth": [(answer, text)],
    "pattern": [(answer, text)]}`` (an answer may have several texts), every text ending in the level suffix."""
    if level not in WALLS_AT_LEVEL:
        raise ValueError(f"level {level!r} not in {tuple(WALLS_AT_LEVEL)}")
    sfx = level_suffix(level)
    return {"location": [(seg, f"{LOCATION_TEMPLATE.format(level=level, wall=w)} {sfx}")
                         for seg, w in WALLS_AT_LEVEL[level]],
            "depth": [(d, f"{DEPTH_TEMPLATE.format(depth=d)} {sfx}") for d in DEPTH_ANSWERS],
            "pattern": [(a, f"{t} {sfx}") for a, texts in PATTERN_ANSWERS.items() for t in texts]}


def _answer_probs(logits: torch.Tensor, answers: list[object]) -> tuple[list[object], torch.Tensor]:
    # logits: (B, T) per sentence; answers: T labels (repeats = several sentences of one answer) -> K answers, (B, K)
    keys = list(dict.fromkeys(answers))
    mean = torch.stack([logits[:, [j for j, a in enumerate(answers) if a == k]].mean(-1) for k in keys], dim=-1)
    return keys, torch.softmax(mean, dim=-1)


@torch.no_grad()
def _contrastive(model, x: torch.Tensor, texts: list[str]) -> torch.Tensor:
    # x: (B, 1, S, S); texts: K answers -> (B, K) logits
    img = model.encode_image(x).float()  # (B, p)
    txt = model.encode_text(texts).float()  # (K, p)
    return model.get_logit_scale().float() * img @ txt.T


@torch.no_grad()
def _caption_loglik(model, x: torch.Tensor, texts: list[str]) -> torch.Tensor:
    # x: (B, 1, S, S); texts: K answers -> (B, K) summed log-likelihood of each sentence under the decoder
    if model.decoder is None:
        raise ValueError("method 'caption' needs a model with a caption decoder (model.caption_weight > 0)")
    fmap = model.visual.forward_features(x).float()  # (B, C, h, w)
    tok = model.tokenize(texts)
    inputs, labels = shift_for_captioning(tok["input_ids"], tok["attention_mask"])  # (K, L-1)
    b, k = x.shape[0], len(texts)
    # the answers' own tokens as the output vocabulary, as training scored its in-batch vocabulary
    vocab, idx = batch_vocabulary(labels)  # (A,), (K, L-1) indices into vocab, -100 at padding
    fm = fmap.repeat_interleave(k, dim=0)  # (B K, C, h, w)
    logits = model.decoder(inputs.repeat(b, 1), fm, vocab).float()  # (B K, L-1, A)
    logp = F.log_softmax(logits, dim=-1)
    ids = idx.repeat(b, 1)  # (B K, L-1)
    tok_lp = logp.gather(-1, ids.clamp(min=0)[..., None])[..., 0] * (ids >= 0)  # (B K, L-1)
    return tok_lp.sum(-1).view(b, k)


def ask(model, images: np.ndarray | torch.Tensor, levels: Sequence[str], p_slice: Sequence[float],
        method: str = "prompts", batch_size: int = 32) -> list[dict]:
    """Regional answers for model-input images (B, S, S) in [0, 1] of the given levels, with their P(LGE):
    per slice ``{"segments": {seg: P x q}, "depth": {third: P x q}, "pattern": {answer: P x q}, "answers":
    {"location": {seg: q}, "depth": {answer: q}, "pattern": {answer: q}}, "reason": None}``."""
    if method not in ASK_METHODS:
        raise ValueError(f"method must be one of {ASK_METHODS}, got {method!r}")
    x_all = torch.as_tensor(np.asarray(images, np.float32))
    if x_all.ndim == 3:
        x_all = x_all[:, None]
    if len(x_all) != len(levels) or len(levels) != len(p_slice):
        raise ValueError(f"{len(x_all)} images, {len(levels)} levels and {len(p_slice)} slice scores")
    device = next(model.parameters()).device
    score = _contrastive if method == "prompts" else _caption_loglik
    out: list[dict] = [{} for _ in levels]
    for level in sorted(set(levels)):
        qs = questions(level)
        rows = [i for i, lv in enumerate(levels) if lv == level]
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            x = x_all[part].to(device)
            with no_autocast():
                q = {name: _answer_probs(score(model, x, [t for _, t in pairs]), [a for a, _ in pairs])
                     for name, pairs in qs.items()}  # name -> (K answers, (b, K))
            for j, i in enumerate(part):
                ps = float(p_slice[i])
                ans = {name: {a: float(p[j, k]) for k, a in enumerate(keys)} for name, (keys, p) in q.items()}
                loc, dep = {int(s): v for s, v in ans["location"].items()}, ans["depth"]
                thirds = {DEPTHS[t]: ps * sum(dep[d] for d, ts in DEPTH_ANSWERS.items() if t in ts) for t in DEPTHS}
                out[i] = {"segments": {s: ps * v for s, v in loc.items()}, "depth": thirds,
                          "pattern": {a: ps * v for a, v in ans["pattern"].items()},
                          "answers": {"location": loc, "depth": dep, "pattern": ans["pattern"]}, "reason": None}
    return out


def ischaemic_score(regional: dict) -> float | None:
    """How ischaemic a slice's scar looks, from its regional answers: q(ischaemic) where the pattern was asked in
    words; else the share of the endocardial third in the three thirds' scores (ischaemic scar starts at the
    endocardium, non-ischaemic spares it), None when the slice has no depth scores."""
    pattern = (regional.get("answers") or {}).get("pattern")
    if pattern:
        return float(pattern["ischaemic"])
    depth = regional.get("depth") or {}
    total = sum(depth.values())
    return float(depth.get(DEPTHS[1], 0.0) / total) if total > 0 else None
