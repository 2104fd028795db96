"""Multi-label zero-shot questions in words (infer.multilabel): the sentences, the answer distributions, the
caption decoder's likelihood against a hand computation, and the region scores P(LGE) x q."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _clip_fixtures import make_tiny_text_model

from lgeclip.infer.multilabel import (
    DEPTH_ANSWERS,
    PATTERN_ANSWERS,
    WALLS_AT_LEVEL,
    _caption_loglik,
    ask,
    ischaemic_score,
    questions,
)
from lgeclip.infer.segments import DEPTHS, LEVEL_SEGMENTS

torch.set_num_threads(1)


def test_questions_name_each_segment_of_the_level_once():
    for level in ("basal", "mid", "apical"):
        q = questions(level)
        segs = [s for s, _ in q["location"]]
        assert segs == list(LEVEL_SEGMENTS[level])
        for (seg, text), (seg_w, wall) in zip(q["location"], WALLS_AT_LEVEL[level], strict=True):
            assert seg == seg_w and f"the {level} {wall} wall." in text
            assert text.endswith(f"This image is from {level} level.")
        assert [d for d, _ in q["depth"]] == list(DEPTH_ANSWERS)
        # two phrasings per pattern, each ending in the level suffix
        assert [a for a, _ in q["pattern"]] == [a for a, ts in PATTERN_ANSWERS.items() for _ in ts]
        assert all(t.endswith(f"This image is from {level} level.") for _, t in q["pattern"])
    assert len({t for _, t in questions("mid")["location"]}) == 6
    with pytest.raises(ValueError, match="level"):
        questions("apex")


class _WordModel(torch.nn.Module):
    """Contrastive stand-in: the image vector points at one wall word and one depth word; a text's vector is the
    one-hot of the words it contains."""

    VOCAB = ("anterior", "anteroseptal", "inferoseptal", "inferior", "inferolateral", "anterolateral", "septal",
             "lateral", *DEPTH_ANSWERS, "ischaemic", "non-ischaemic")

    def __init__(self, image_words: list[tuple[str, str]], scale: float = 50.0) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.image_words, self.scale = image_words, scale

    def _vec(self, words) -> torch.Tensor:
        v = torch.zeros(len(self.VOCAB))
        for w in words:
            v[self.VOCAB.index(w)] = 1.0
        return F.normalize(v, dim=0)

    def encode_image(self, x):
        return torch.stack([self._vec(self.image_words[int(i)]) for i in x[:, 0, 0, 0]])

    def encode_text(self, texts):
        return torch.stack([self._vec([w.strip(".,") for w in t.split() if w.strip(".,") in self.VOCAB])
                            for t in texts])

    def get_logit_scale(self):
        return torch.tensor(self.scale)


def test_prompt_answers_point_at_the_described_wall_and_depth():
    words = [("inferior", "subendocardial"), ("lateral", "transmural"), ("anteroseptal", "subepicardial")]
    model = _WordModel(words)
    images = np.zeros((3, 8, 8), np.float32)
    images[:, 0, 0] = [0, 1, 2]  # which word pair each image carries
    out = ask(model, images, ["basal", "apical", "mid"], [0.9, 0.5, 0.0], method="prompts")
    assert max(out[0]["answers"]["location"], key=out[0]["answers"]["location"].get) == 4  # basal inferior
    assert max(out[1]["answers"]["location"], key=out[1]["answers"]["location"].get) == 16  # apical lateral
    assert max(out[2]["answers"]["location"], key=out[2]["answers"]["location"].get) == 8  # mid anteroseptal
    for o in out:
        assert sum(o["answers"]["location"].values()) == pytest.approx(1.0)
        assert sum(o["answers"]["depth"].values()) == pytest.approx(1.0)
    # region score = P(LGE) x q; a third adds the transmural answer to its own
    assert out[0]["segments"][4] == pytest.approx(0.9 * out[0]["answers"]["location"][4])
    d0 = out[0]["answers"]["depth"]
    assert out[0]["depth"]["subendocardial"] == pytest.approx(0.9 * (d0["subendocardial"] + d0["transmural"]))
    assert max(out[0]["depth"], key=out[0]["depth"].get) == "subendocardial"
    assert set(out[1]["depth"]) == set(DEPTHS.values()) and min(out[1]["depth"].values()) > 0.45  # transmural
    assert all(v == 0.0 for v in out[2]["segments"].values())  # a clean slice stays clean everywhere
    with pytest.raises(ValueError, match="method"):
        ask(model, images, ["basal"] * 3, [0.5] * 3, method="occlude")
    with pytest.raises(ValueError, match="levels"):
        ask(model, images, ["basal"] * 2, [0.5] * 3)


def test_pattern_answer_follows_the_image_and_the_depth_fallback():
    # image 0 carries "ischaemic", image 1 "non-ischaemic" (with a wall word, as the pair above)
    model = _WordModel([("inferior", "ischaemic"), ("lateral", "non-ischaemic")])
    images = np.zeros((2, 8, 8), np.float32)
    images[:, 0, 0] = [0, 1]
    out = ask(model, images, ["mid", "mid"], [0.8, 0.6], method="prompts")
    for o, ps in zip(out, (0.8, 0.6), strict=True):
        assert set(o["answers"]["pattern"]) == set(PATTERN_ANSWERS)
        assert sum(o["answers"]["pattern"].values()) == pytest.approx(1.0)
        assert o["pattern"]["ischaemic"] == pytest.approx(ps * o["answers"]["pattern"]["ischaemic"])
    assert ischaemic_score(out[0]) > 0.9 > 0.1 > ischaemic_score(out[1])
    # by hand at scale 2: an answer's logit is the mean over its sentences; image 0's cosine with the first
    # ischaemic phrasing is 1/sqrt(2) ("inferior" + "ischaemic" against "ischaemic"), 0 with "Infarct pattern ..."
    # (no vocabulary word) and 0 with both non-ischaemic ones: q = sigmoid(2 / sqrt(2) / 2 - 0)
    q = ask(_WordModel(model.image_words, scale=2.0), images, ["mid", "mid"], [1.0, 1.0])[0]["answers"]["pattern"]
    assert q["ischaemic"] == pytest.approx(1 / (1 + np.exp(-1 / np.sqrt(2))), abs=1e-5)
    # without a pattern answer (editing methods): the endocardial third's share of the depth scores
    assert ischaemic_score({"depth": {"subendocardial": 0.6, "mid-wall": 0.3, "subepicardial": 0.1}}) == \
        pytest.approx(0.6)
    assert ischaemic_score({"segments": {}, "depth": {}, "reason": "no map"}) is None


def test_caption_likelihood_is_the_decoders_sentence_probability(tmp_path):
    from lgeclip.models import ClipModelCfg, LgeClip

    text = make_tiny_text_model(tmp_path)
    model = LgeClip(ClipModelCfg(text_model=text, embed_dim=24, decoder_width=32, decoder_layers=2, decoder_heads=2,
                                 text_max_length=32, vision_init="random")).eval()
    for p in model.decoder.parameters():  # an untrained decoder is near-uniform: make it opinionated
        torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    texts = [questions("mid")["location"][3][1], questions("mid")["location"][0][1]]  # inferior, anterior
    got = _caption_loglik(model, x, texts)  # (2 images, 2 sentences)
    # by hand: the teacher-forced decoder over the two sentences' own tokens, log-probabilities summed
    tok = model.tokenize(texts)
    ids, mask = tok["input_ids"], tok["attention_mask"]
    vocab_ids = torch.unique(ids[:, 1:][mask[:, 1:] > 0])
    with torch.no_grad():
        fmap = model.visual.forward_features(x)
        for i in range(2):
            for k in range(2):
                n = int(mask[k].sum())
                lp = F.log_softmax(model.decoder(ids[k:k + 1, : n - 1], fmap[i:i + 1], vocab_ids)[0], -1)  # (n-1, A)
                target = torch.searchsorted(vocab_ids, ids[k, 1:n])
                assert got[i, k].item() == pytest.approx(lp[torch.arange(n - 1), target].sum().item(), abs=1e-3)
    out = ask(model, x.numpy()[:, 0], ["mid", "basal"], [1.0, 1.0], method="caption")
    assert sum(out[0]["answers"]["location"].values()) == pytest.approx(1.0)
    assert len({round(v, 6) for v in out[0]["answers"]["location"].values()}) > 1  # the answers differ
    model.decoder = None
    with pytest.raises(ValueError, match="caption decoder"):
        ask(model, x.numpy()[:, 0], ["mid", "basal"], [1.0, 1.0], method="caption")
