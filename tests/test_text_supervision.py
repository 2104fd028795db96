"""What the text-supervised model learns from: sentence pooling without the level suffix, caption grouping,
sentence choice, per-group learning rates, a fixed or learned temperature, and the patient aggregation chosen
on validation patients."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from _clip_fixtures import make_tiny_cache, make_tiny_text_model, tiny_overrides

from lgeclip.data.clip import caption_sentences
from lgeclip.metrics import aggregate
from lgeclip.models import ClipModelCfg, LgeClip
from lgeclip.models.losses import caption_ids_from_texts, caption_key
from lgeclip.models.text import TextTower, split_level_suffix
from lgeclip.train.clip import EvalCfg, OptimCfg, choose_aggregation, clip_param_groups, load_run_config, train_clip

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return str(make_tiny_text_model(tmp_path_factory.mktemp("bert")))


def test_split_level_suffix():
    assert split_level_suffix("No LGE. This image is from basal level.") == \
        ("No LGE.", "This image is from basal level.")
    assert split_level_suffix("No LGE.") == ("No LGE.", "")


def test_sentence_pooling_ignores_the_level_suffix(tiny_bert):
    tower = TextTower(tiny_bert, embed_dim=8, pooling="sentence", max_length=32).eval()
    texts = ["there is hyperenhancement. This image is from basal level.", "there is hyperenhancement."]
    tok = tower.tokenize(texts)
    sentence_tokens = len(tower.tokenizer("there is hyperenhancement.", add_special_tokens=False)["input_ids"])
    # the captioned text pools exactly its sentence tokens (after [CLS]); a text without suffix pools everything
    assert tok["pool_mask"][0].sum().item() == sentence_tokens
    assert tok["pool_mask"][0, 0].item() == 0 and tok["pool_mask"][0, 1].item() == 1
    assert torch.equal(tok["pool_mask"][1], tok["attention_mask"][1])
    # the suffix still conditions the pooled tokens (attention), so two levels differ a little, not by half
    with torch.no_grad():
        a, b = tower.pooled(["there is hyperenhancement. This image is from basal level.",
                             "there is hyperenhancement. This image is from apical level."])
        mean = TextTower(tiny_bert, embed_dim=8, pooling="mean", max_length=32).eval()
        ma, mb = mean.pooled(["there is hyperenhancement. This image is from basal level.",
                              "there is hyperenhancement. This image is from apical level."])
    assert not torch.allclose(a, b)
    assert (a - b).norm() < (ma - mb).norm()


def test_caption_grouping_by_sentence():
    texts = ["No LGE. This image is from basal level.", "no LGE This image is from apical level.",
             "There is LGE. This image is from basal level.", "No LGE. This image is from basal level."]
    assert caption_ids_from_texts(texts).tolist() == [0, 1, 2, 0]  # exact: the level splits "No LGE."
    assert caption_ids_from_texts(texts, grouping="sentence").tolist() == [0, 0, 1, 0]
    assert caption_key("Subendocardial scar, <50% . This image is from mid level.", "sentence") == \
        "subendocardial scar <50%"
    with pytest.raises(ValueError, match="grouping"):
        caption_key("x", "fuzzy")


def test_caption_sentences_status_rule_drops_side_sentences():
    s = ["There is transmural LGE in the inferior wall.", "No microvascular obstruction."]
    assert caption_sentences(s, "all") == s
    assert caption_sentences(s, "status") == s[:1]
    assert caption_sentences(["No MVO."], "status") == ["No MVO."]  # nothing says it: keep what there is


def test_param_groups_have_their_own_lr_and_cover_every_trainable_parameter(tiny_bert):
    cfg = ClipModelCfg(text_model=tiny_bert, embed_dim=16, decoder_width=16, decoder_heads=2, decoder_layers=1,
                       text_unfreeze_layers=1, text_max_length=32)
    model = LgeClip(cfg)
    groups = clip_param_groups(model, OptimCfg(vision_lr=1e-5, text_lr=2e-5, head_lr=1e-3, logit_scale_lr=1e-2))
    by = {g["name"]: g for g in groups}
    assert set(by) == {"vision", "text", "head", "logit_scale"}
    assert [by[n]["lr"] for n in ("vision", "text", "head", "logit_scale")] == [1e-5, 2e-5, 1e-3, 1e-2]
    assert by["logit_scale"]["weight_decay"] == 0.0 and by["logit_scale"]["params"] == [model.logit_scale]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert len(ids) == len(set(ids))
    text_ids = {id(q) for q in by["text"]["params"]}
    assert all(id(p) in text_ids for p in model.text.encoder.encoder.layer[-1].parameters())
    # null learning rates leave the loop's lr in charge
    assert all("lr" not in g for g in clip_param_groups(model, OptimCfg()))


def test_logit_scale_fixed_by_config(tiny_bert):
    cfg = ClipModelCfg(text_model=tiny_bert, embed_dim=16, caption_weight=0.0, learn_logit_scale=False,
                       init_logit_scale=float(np.log(50.0)))
    model = LgeClip(cfg)
    assert not model.logit_scale.requires_grad
    assert model.get_logit_scale().item() == pytest.approx(50.0)
    assert "logit_scale" not in {g["name"] for g in clip_param_groups(model, OptimCfg())}


def test_noisy_or_and_aggregation_names():
    assert aggregate([0.5, 0.5], "noisy_or") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="aggregation"):
        EvalCfg(aggregation="median")
    EvalCfg(aggregation="auto", candidates=["max", "noisy_or"])


class _Rec:
    def __init__(self, key, label):
        self.patient_key, self.label, self.scar_truth = key, label, None


def test_choose_aggregation_picks_the_best_candidate_on_validation():
    # positives have one bright slice among low ones, negatives three middling slices: max ranks them wrongly
    # (0.6 vs 0.62), mean gets every patient right
    recs, p = [], []
    for i in range(3):
        recs += [_Rec(f"pos{i}", "positive")] * 3
        p += [0.6, 0.55, 0.58]
        recs += [_Rec(f"neg{i}", "negative")] * 3
        p += [0.62, 0.2, 0.1]
    choice = choose_aggregation(recs, np.array(p), EvalCfg(aggregation="auto", candidates=["max", "mean"]))
    assert choice["aggregation"] == "mean"
    assert choice["candidates"]["max"]["auroc"] == 0.0 and choice["candidates"]["mean"]["auroc"] == 1.0


def test_auto_aggregation_is_written_and_read_back(tmp_path, tiny_bert):
    cache = make_tiny_cache(tmp_path / "c", n_patients=12, size=64, seed=3)
    run = tmp_path / "run"
    summary = train_clip("smoke", cache, run, overrides=[*tiny_overrides(tiny_bert), "eval.aggregation=auto",
                                                        "optim.logit_scale_lr=0.01", "model.text_pooling=sentence",
                                                        "model.caption_grouping=sentence"])
    choice = json.loads((run / "aggregation.json").read_text())
    assert choice["aggregation"] in ("max", "top2", "mean") and summary["aggregation"] == choice["aggregation"]
    assert load_run_config(run).eval.aggregation == choice["aggregation"]
    import csv

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert "train_logit_scale" in rows[-1] and "val_prompt_cosine" in rows[-1]


def test_batch_vocabulary_selects_the_columns_of_the_full_head(tiny_bert):
    from lgeclip.models.decoder import batch_vocabulary

    labels = torch.tensor([[7, 3, -100], [3, 9, 7]])
    vocab, remapped = batch_vocabulary(labels)
    assert vocab.tolist() == [3, 7, 9] and remapped.tolist() == [[1, 0, -100], [0, 2, 1]]
    cfg = dict(text_model=tiny_bert, embed_dim=16, decoder_width=16, decoder_heads=2, decoder_layers=1,
               text_max_length=32, proj_dropout=0.0, decoder_dropout=0.0)
    torch.manual_seed(0)
    full = LgeClip(ClipModelCfg(**cfg)).eval()
    batch = LgeClip(ClipModelCfg(**cfg, caption_vocab="batch")).eval()
    batch.load_state_dict(full.state_dict())
    x = torch.rand(2, 1, 64, 64)
    caps = ["there is no hyperenhancement. This image is from mid level.", "there is hyperenhancement."]
    with torch.no_grad():
        a, b = full(x, caps), batch(x, caps)
    v, lab = batch_vocabulary(a["caption_labels"])
    assert torch.equal(b["caption_labels"], lab)
    assert torch.allclose(b["caption_logits"], a["caption_logits"][..., v], atol=1e-5)


def test_generic_synthetic_sentences_are_location_free_twins_of_the_negated_ones():
    from lgeclip.synth.templates import ENHANCEMENT_WORDS, GENERIC_TEMPLATES, NEGATIVE_TEMPLATES, draw_sentence

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        sentence, words = draw_sentence(rng, "inferolateral", "transmural", "mid", generic_prob=1.0)
        assert "inferolateral" not in sentence and "transmural" not in sentence
        assert sentence.endswith("This image is from mid level.") and words["template"].startswith("generic")
        seen.add(words["template"])
    assert len(seen) == len(GENERIC_TEMPLATES)
    # each generic sentence and its negated twin differ by the negation only
    for pos, neg in zip(GENERIC_TEMPLATES, NEGATIVE_TEMPLATES, strict=True):
        p, n = pos.format(enh=ENHANCEMENT_WORDS[0]).lower(), neg.format(enh=ENHANCEMENT_WORDS[0]).lower()
        assert set(p.split()) < set(n.split()) and set(n.split()) - set(p.split()) == {"no"}
    # generic_prob=0 keeps the paper's draws (same stream as before the option existed)
    a = draw_sentence(np.random.default_rng(1), "inferior", "subendocardial", "basal")
    b = draw_sentence(np.random.default_rng(1), "inferior", "subendocardial", "basal", generic_prob=0.0)
    assert a == b and "inferior" in a[0]


def test_negation_twins():
    from lgeclip.synth.templates import negation_twin

    sfx = " This image is from mid level."
    assert negation_twin("There is scar in the myocardium." + sfx) == "There is no scar in the myocardium." + sfx
    assert negation_twin("No scar is seen." + sfx) == "Scar is seen." + sfx
    assert negation_twin("No late gadolinium enhancement." + sfx) == "There is late gadolinium enhancement." + sfx
    assert negation_twin("There is no hyperenhancement in the myocardium.") == \
        "There is hyperenhancement in the myocardium."
    assert negation_twin("LGE: none." + sfx) is None


def test_hard_negatives_only_touch_their_own_row():
    from lgeclip.models.losses import clip_loss_from_logits, hard_negative_i2t_loss

    logits = torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 0.0], [1.0, 0.0, 2.0]])
    base_i2t = torch.nn.functional.cross_entropy(logits, torch.arange(3), reduction="none")
    hard = torch.tensor([[2.5], [9.0], [9.0]])  # one hard negative, owned by image 0
    rows = torch.tensor([0])
    loss = hard_negative_i2t_loss(logits, hard, rows)
    # row 0 gains exp(2.5) in its denominator; rows 1 and 2 do not see that column (9.0 would dominate them)
    row0 = -3.0 + torch.logsumexp(torch.tensor([3.0, 0.0, 1.0, 2.5]), 0)
    assert loss.item() == pytest.approx(((row0 + base_i2t[1] + base_i2t[2]) / 3).item(), abs=1e-5)
    # without hard negatives the symmetric loss is the plain CLIP loss
    from lgeclip.models.losses import ClipLoss

    f = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    s = torch.tensor(5.0)
    assert ClipLoss()(f, t, s).item() == pytest.approx(clip_loss_from_logits(s * f @ t.T).item(), abs=1e-5)
    assert ClipLoss()(f, t, s, None, t[:0], rows[:0]).item() == pytest.approx(ClipLoss()(f, t, s).item(), abs=1e-6)
    assert ClipLoss()(f, t, s, None, t[:1], rows).item() > ClipLoss()(f, t, s).item()


def test_sentence_levels_reads_levels_ranges_and_skips_the_mid_wall_layer():
    from lgeclip.report.levels import sentence_levels

    cases = {
        "There is subendocardial LGE of the basal to mid inferior wall.": {"basal", "mid"},
        "Full-thickness infarct of the basal to apical anterior wall.": {"basal", "mid", "apical"},
        "Intramyocardial mid-wall LGE involving the apical septal wall.": {"apical"},
        "Intramyocardial mid-wall fibrosis of the septum.": None,
        "Patchy mid myocardial enhancement.": None,
        "Transmural scar in the mid anterior wall and the true apex.": {"mid", "apical"},
        "Myocardial infarction with transmural LGE at the mid and apical level(s).": {"mid", "apical"},
        "LGE in keeping with transmural infarction (basal, mid and apical).": {"basal", "mid", "apical"},
        "Infarct from base to apex.": {"basal", "mid", "apical"},
        "No late gadolinium enhancement.": None,
    }
    for text, want in cases.items():
        got = sentence_levels(text)
        assert (got if got is None else set(got)) == want, text


def test_level_captions_keep_sentences_of_the_slice_level_and_negate_unnamed_levels():
    from lgeclip.data.clip import level_captions

    report = ["Transmural LGE of the basal inferior wall.", "MVO is present.",
              "Subendocardial LGE of the mid to apical anterior wall."]
    assert level_captions(report, "basal", "positive") == (report[:1], "positive")
    assert level_captions(report, "apical", "positive") == (report[2:], "positive")
    assert level_captions(report[:1], "apical", "positive") == ([], "negative")  # basal scar only: apical is clean
    unlocated = ["Extensive LGE.", "MVO is present."]
    assert level_captions(unlocated, "apical", "positive") == (unlocated, "positive")  # nothing to match
    assert level_captions(["No LGE."], "mid", "negative") == (["No LGE."], "negative")


def test_clip_pairs_with_matched_levels_caption_only_named_levels(tmp_path):
    from lgeclip.data.clip import ClipPairs, DataCfg, level_captions
    from lgeclip.preprocess.cache import read_cache
    from lgeclip.report.levels import sentence_levels
    from lgeclip.synth.templates import NEGATIVE_TEMPLATES, split_level_suffix

    # the tiny reports name no level: positive reports now place their scar at the basal level only
    records = [dataclasses.replace(r, sentences=[s.replace("in the ", "in the basal ") for s in r.sentences])
               if r.label == "positive" else r
               for r in read_cache(make_tiny_cache(tmp_path, n_patients=8, size=64, seed=3))]
    cfg = DataCfg(image_size=48, caption_sentences="status", caption_levels="match")
    ds = ClipPairs(records, cfg, train=True, seed=0)
    n_level_negative = n_matched = 0
    for i in range(len(ds)):
        r = ds.records[i]
        _, label = level_captions(caption_sentences(r.sentences, "status"), r.level, r.label)
        item = ds[i]
        sentence, _ = split_level_suffix(item["caption"])
        assert item["label"] == (1 if label == "positive" else 0)
        if r.label == "positive" and label == "negative":
            n_level_negative += 1
            negated = any(t.split("{enh}")[0].strip().lower() in sentence.lower() for t in NEGATIVE_TEMPLATES)
            assert item["synthetic"] or negated, item["caption"]
        elif r.label == "positive" and sentence_levels(sentence) is not None:
            n_matched += 1
            assert r.level in sentence_levels(sentence)
    assert n_matched > 0 and n_level_negative > 0
    with pytest.raises(ValueError, match="caption_levels"):
        DataCfg(caption_levels="nearest")


def test_soft_targets_share_mass_between_similar_captions_and_reduce_to_the_hard_loss():
    from lgeclip.models.losses import clip_loss_from_logits, clip_targets

    ids = torch.tensor([0, 1, 2])
    ref = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), dim=-1)
    y = clip_targets(ids, ref, soft_weight=0.5, temperature=0.05)
    cos01 = float(ref[0] @ ref[1])
    e = torch.exp(torch.tensor([1.0, cos01, 0.0]) / 0.05)
    assert torch.allclose(y[0], 0.5 * torch.tensor([1.0, 0, 0]) + 0.5 * e / e.sum(), atol=1e-6)  # by hand
    assert y[0, 1] > 0.2 and y[0, 2] < 1e-6  # the paraphrase gets mass, the unrelated caption none
    assert torch.allclose(y.sum(1), torch.ones(3))
    logits = torch.randn(3, 3)
    assert torch.allclose(clip_loss_from_logits(logits, ids, ref, 0.0), clip_loss_from_logits(logits, ids))
    # hard targets prefer a model that tells the two paraphrases apart, soft targets one that does not
    alike = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    apart = torch.tensor([[5.0, -5.0, -5.0], [-5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    assert clip_loss_from_logits(apart, ids) < clip_loss_from_logits(alike, ids)
    assert clip_loss_from_logits(alike, ids, ref, 0.5) < clip_loss_from_logits(apart, ids, ref, 0.5)
    with pytest.raises(ValueError, match="reference"):
        clip_targets(ids, None, soft_weight=0.5)


def test_reference_features_come_from_the_last_frozen_layer(tiny_bert):
    tower = TextTower(tiny_bert, embed_dim=8, pooling="mean", unfreeze_layers=1, max_length=32)
    texts = ["there is hyperenhancement.", "there is no hyperenhancement."]
    proj, ref = tower.forward_with_reference(texts)
    assert proj.shape == (2, 8) and ref.shape == (2, tower.hidden_size) and not ref.requires_grad
    before = ref.clone()
    with torch.no_grad():  # moving the trainable top layer moves the output, not the reference
        for p in tower.unfrozen_layers()[0].parameters():
            p.add_(0.5)
    proj2, ref2 = tower.forward_with_reference(texts)
    assert torch.allclose(ref2, before) and not torch.allclose(proj2, proj)
    frozen = TextTower(tiny_bert, embed_dim=8, pooling="mean", max_length=32)
    _, fref = frozen.forward_with_reference(texts)
    assert torch.allclose(fref, frozen.pooled(texts))


def test_locked_text_space_keeps_the_encoders_geometry(tiny_bert):
    texts = ["there is hyperenhancement. This image is from mid level.",
             "there is no hyperenhancement. This image is from mid level."]
    tower = TextTower(tiny_bert, embed_dim=32, pooling="sentence", projection="none")
    assert not [p for p in tower.parameters() if p.requires_grad]  # nothing on the text side can move
    with torch.no_grad():
        assert torch.equal(tower(texts), tower.pooled(texts))  # the joint space is the encoder's own space
    with pytest.raises(ValueError, match="hidden size"):
        TextTower(tiny_bert, embed_dim=8, projection="none")
    with pytest.raises(ValueError, match="projection"):
        TextTower(tiny_bert, embed_dim=32, projection="linear")
    cfg = ClipModelCfg(text_model=tiny_bert, embed_dim=32, text_projection="none", caption_weight=0.0)
    model = LgeClip(cfg)
    out = model(torch.rand(2, 1, 32, 32), texts)
    assert out["image_features"].shape == out["text_features"].shape == (2, 32)
    assert "text." not in " ".join(n for n, p in model.named_parameters() if p.requires_grad)


def test_prompt_ensemble_is_the_normalised_mean_of_its_members(tiny_bert):
    from lgeclip.models.zeroshot import POSITIVE_PROMPT, PROMPT_SETS, ZeroShotClassifier
    from lgeclip.synth.templates import level_suffix

    model = LgeClip(ClipModelCfg(text_model=tiny_bert, embed_dim=16, caption_weight=0.0)).eval()
    pos, neg = PROMPT_SETS["ensemble"]
    assert POSITIVE_PROMPT in pos and len(pos) == len(neg) > 1
    emb = ZeroShotClassifier(model, prompts="ensemble").prompt_embeddings("basal")
    with torch.no_grad():
        members = model.encode_text([f"{t} {level_suffix('basal')}" for t in pos])
    want = torch.nn.functional.normalize(members.mean(0), dim=-1)
    assert torch.allclose(emb[0], want, atol=1e-5)
    paper = ZeroShotClassifier(model).prompt_embeddings("basal")
    assert torch.allclose(paper, ZeroShotClassifier(model, prompts="paper").prompt_embeddings("basal"))
    assert not torch.allclose(paper, emb)
    with pytest.raises(ValueError, match="prompt set"):
        ZeroShotClassifier(model, prompts="mine")
    with pytest.raises(ValueError, match="eval.prompts"):
        EvalCfg(prompts="mine")


def test_prompt_anchor_loss_by_hand():
    from lgeclip.models.losses import prompt_anchor_loss

    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    # row 0: -log(e^2 / (e^2 + 1)); row 1: -(0.25 log 0.5 + 0.75 log 0.5) = log 2
    want = (math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2
    assert prompt_anchor_loss(logits, targets).item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        prompt_anchor_loss(torch.zeros(2, 3), torch.zeros(2, 3))


def test_valley_threshold_splits_two_modes_of_unequal_size():
    from lgeclip.models.anchors import anchor_posterior, valley_threshold

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.05, 0.01, 100), rng.normal(0.0, 0.01, 300)])
    fit = valley_threshold(x)
    assert not fit["unimodal"] and 0.015 < fit["threshold"] < 0.04  # between the modes, not at the mean (0.0125)
    assert fit["modes"][0] == pytest.approx(0.0, abs=0.006) and fit["modes"][1] == pytest.approx(0.05, abs=0.006)
    # Silverman's rule: bandwidth = sd * (3n / 4) ** (-1 / 5) for one dimension
    assert fit["bandwidth"] == pytest.approx(x.std(ddof=1) * (400 * 3 / 4) ** (-0.2), rel=1e-6)
    t = torch.tensor([fit["threshold"], fit["bandwidth"]])
    q = anchor_posterior(torch.tensor([fit["threshold"], 0.05, 0.0]), t)
    assert q[0] == pytest.approx(0.5) and q[1] > 0.9 and q[2] < 0.1
    one = valley_threshold(rng.normal(0.0, 1.0, 500))
    assert one["unimodal"] and one["threshold"] == 0.0
    with pytest.raises(ValueError, match="distinct"):
        valley_threshold(np.ones(5))


def test_prompt_anchors_follow_the_caption_and_the_slice_level(tiny_bert):
    from lgeclip.models.anchors import anchor_posterior
    from lgeclip.models.losses import CocaLoss
    from lgeclip.models.zeroshot import ZeroShotClassifier, prompts_for_level

    cfg = ClipModelCfg(text_model=tiny_bert, embed_dim=32, text_projection="none", text_pooling="sentence",
                       caption_weight=0.0, prompt_anchor_weight=1.0, prompt_anchor_target_prompts="paper")
    model = LgeClip(cfg).eval()
    levels = ["basal", "apical"]
    captions = [prompts_for_level("basal")[0], prompts_for_level("apical")[1]]  # the positive / negative prompt
    images = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="not fitted"):
        model(images, captions, levels=levels)
    corpus = [p for lv in ("basal", "mid", "apical") for p in prompts_for_level(lv) for _ in range(3)]
    corpus_levels = [lv for lv in ("basal", "mid", "apical") for _ in range(6)]
    fitted = model.fit_prompt_anchors(corpus, corpus_levels)
    assert fitted["n_captions"] == 18 and fitted["modes"][0] < fitted["threshold"] < fitted["modes"][1]
    out = model(images, captions, levels=levels)
    assert out["anchor_logits"].shape == out["anchor_targets"].shape == (2, 2)
    assert not out["anchor_targets"].requires_grad and out["anchor_logits"].requires_grad
    # targets: sigmoid((d - t) / h) of each caption's frozen-text score against its own level's prompt pair
    d = model.caption_prompt_scores(captions, levels)
    assert d[0] > 0 > d[1]  # a prompt is closer to itself than to its negation
    q = anchor_posterior(d, model.anchor_threshold)
    assert torch.allclose(out["anchor_targets"][:, 0], q, atol=1e-5) and q[0] > 0.5 > q[1]
    assert torch.allclose(out["anchor_targets"].sum(1), torch.ones(2))
    # the logits are the zero-shot rule's: scale x cos(image, [P+, P-] of the slice's own level)
    zs = ZeroShotClassifier(model)
    for i, lv in enumerate(levels):
        want = out["logit_scale"] * (out["image_features"][i] @ zs.prompt_embeddings(lv).T)
        assert torch.allclose(out["anchor_logits"][i], want, atol=1e-5)
    # with the ensemble the sides are ZeroShotClassifier's ensemble sides
    feats, _ = model.prompt_sides(["mid"], "ensemble")
    assert torch.allclose(feats[0], ZeroShotClassifier(model, prompts="ensemble").prompt_embeddings("mid"), atol=1e-5)
    terms = CocaLoss.from_cfg(cfg)(out)
    assert set(terms) == {"contrastive_loss", "caption_loss", "anchor_loss", "loss"}
    assert terms["loss"].item() == pytest.approx((terms["contrastive_loss"] + terms["anchor_loss"]).item(), rel=1e-5)
    assert "anchor_logits" not in model(images, captions)  # no levels, no anchors
    with pytest.raises(ValueError, match="levels"):
        model(images, captions, levels=["mid"])
    with pytest.raises(ValueError, match="prompt_anchor_weight"):
        ClipModelCfg(prompt_anchor_weight=-1.0)
    with pytest.raises(ValueError, match="prompt set"):
        ClipModelCfg(prompt_anchor_target_prompts="mine")
    # the fitted threshold is part of the weights a run folder keeps
    again = LgeClip(cfg, init_weights=False)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.anchor_threshold, model.anchor_threshold)


def test_training_with_prompt_anchors_fits_the_mixture_and_keeps_it_in_the_run(tmp_path, tiny_bert):
    import csv

    from lgeclip.train.clip import load_run_model

    cache = make_tiny_cache(tmp_path / "c", n_patients=12, size=64, seed=3)
    run = tmp_path / "run"
    train_clip("smoke", cache, run, overrides=[*tiny_overrides(tiny_bert), "model.prompt_anchor_weight=1.0",
                                               "model.text_pooling=sentence", "model.caption_grouping=sentence"])
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert float(rows[-1]["train_anchor_loss"]) > 0
    _, model = load_run_model(run)
    threshold, bandwidth = model.anchor_threshold.tolist()
    assert bandwidth > 0 and -1 < threshold < 1
    with pytest.raises(ValueError, match="eval.prompts"):
        train_clip("smoke", cache, tmp_path / "bad", overrides=[*tiny_overrides(tiny_bert), "eval.prompts=ensemble",
                                                                "model.prompt_anchor_weight=1.0"])
