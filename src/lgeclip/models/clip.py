"""``LgeClip``: DenseNet121 image tower + frozen HF text tower (+ CoCa caption decoder), open_clip style."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lgeclip.models.configs import ClipModelCfg
from lgeclip.models.decoder import CaptionDecoder, batch_vocabulary, shift_for_captioning
from lgeclip.models.text import TextTower, Tokens
from lgeclip.models.vision import DENSENET_CHANNELS, VisionTower
from lgeclip.models.vision_init import LoadReport, load_vision_init

FORWARD_KEYS = ("image_features", "text_features", "logit_scale", "caption_logits", "caption_labels")


class LgeClip(nn.Module):
    """CLIP (+ CoCa caption head) for LGE slices and report sentences.

    Images: (B, 1, S, S) float in [0, 1] (normalised inside, see ``VisionTower``). Texts: a list of B strings
    (tokenised inside with the text tower's tokenizer, truncated at ``cfg.text_max_length``) or tokens from
    ``tokenize``. ``init_weights=False`` skips the vision init loader (use it when a trained state dict follows).
    """

    def __init__(self, cfg: ClipModelCfg, init_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTower(cfg.embed_dim, cfg.proj_dropout, cfg.image_mean, cfg.image_std)
        self.init_report: LoadReport | None = load_vision_init(self.visual.encoder, cfg) if init_weights else None
        self.text = TextTower(cfg.text_model, cfg.embed_dim, cfg.proj_dropout, cfg.text_pooling,
                              cfg.text_unfreeze_layers, cfg.text_max_length, cfg.text_cache_size,
                              cfg.text_projection)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)),
                                        requires_grad=bool(cfg.learn_logit_scale))
        self.decoder: CaptionDecoder | None = None
        if cfg.has_decoder:
            self.decoder = CaptionDecoder(self.text.vocab_size, self.text.max_length, DENSENET_CHANNELS,
                                          cfg.decoder_width, cfg.decoder_layers, cfg.decoder_heads,
                                          cfg.decoder_dropout)

    def tokenize(self, texts: list[str]) -> Tokens:
        """Token ids and attention mask (B, L) on the model's device."""
        return self.text.tokenize(texts)

    def get_logit_scale(self) -> torch.Tensor:
        """exp(logit_scale) clamped at ``cfg.max_logit_scale`` (scalar tensor)."""
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 1, S, S) in [0, 1] -> (B, p) image embeddings (L2-normalised by default)."""
        x = self.visual(images)  # (B, p)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) -> (B, hw, 1024) spatial DenseNet tokens (what the caption decoder attends to)."""
        return self.visual.forward_features(images).flatten(2).transpose(1, 2)

    def encode_text(self, texts: list[str] | Tokens, normalize: bool = True) -> torch.Tensor:
        """B strings (or their tokens) -> (B, p) text embeddings (L2-normalised by default)."""
        x = self.text(texts)  # (B, p)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, images: torch.Tensor, texts: list[str] | Tokens,
                hard_negatives: list[str | None] | None = None) -> dict[str, torch.Tensor | None]:
        """Dict with keys ``FORWARD_KEYS``; caption_logits (B, L-1, V) / caption_labels (B, L-1) are None
        without decoder (caption_weight 0). Labels hold -100 at padding.

        ``hard_negatives``: per image an extra text that must NOT match it (e.g. its caption negated) or None;
        adds ``hard_negative_features`` (H, p) and ``hard_negative_rows`` (H,) (the image each belongs to).
        With ``cfg.soft_target_weight > 0`` adds ``text_reference`` (B, H): normalised frozen-layer text features."""
        n_texts = len(texts["input_ids"] if isinstance(texts, dict) else texts)
        if n_texts != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {n_texts} captions")
        fmap = self.visual.forward_features(images)  # (B, 1024, h, w)
        image_features = F.normalize(self.visual.proj(self.visual.pool(fmap)), dim=-1)  # (B, p)
        text_reference = None
        if self.cfg.soft_target_weight > 0:
            projected, reference = self.text.forward_with_reference(texts)  # (B, p), (B, H)
            text_features = F.normalize(projected, dim=-1)
            text_reference = F.normalize(reference, dim=-1)
        else:
            text_features = self.encode_text(texts)  # (B, p)
        caption_logits = caption_labels = None
        if self.decoder is not None:
            tokens = texts if isinstance(texts, dict) else self.text.tokenize(texts)  # (B, L)
            inputs, caption_labels = shift_for_captioning(tokens["input_ids"], tokens["attention_mask"])  # (B, L-1)
            vocab = None
            if self.cfg.caption_vocab == "batch":
                vocab, caption_labels = batch_vocabulary(caption_labels)  # (A,), (B, L-1) indices into vocab
            caption_logits = self.decoder(inputs, fmap, vocab)  # (B, L-1, V or A)
        out = {"image_features": image_features, "text_features": text_features,
               "logit_scale": self.get_logit_scale(), "caption_logits": caption_logits,
               "caption_labels": caption_labels}
        if text_reference is not None:
            out["text_reference"] = text_reference
        if hard_negatives is not None:
            rows = [i for i, t in enumerate(hard_negatives) if t]
            feats = (self.encode_text([hard_negatives[i] for i in rows]) if rows
                     else image_features.new_zeros((0, image_features.shape[1])))  # (H, p)
            out["hard_negative_features"] = feats
            out["hard_negative_rows"] = torch.tensor(rows, dtype=torch.long, device=image_features.device)  # (H,)
        return out
