"""``LgeClip``: DenseNet121 image tower + frozen HF text tower (+ CoCa caption decoder), open_clip style."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lgeclip.models.anchors import anchor_posterior, valley_threshold
from lgeclip.models.configs import ClipModelCfg
from lgeclip.models.decoder import CaptionDecoder, batch_vocabulary, shift_for_captioning
from lgeclip.models.text import TextTower, Tokens
from lgeclip.models.vision import DENSENET_CHANNELS, VisionTower
from lgeclip.models.vision_init import LoadReport, load_vision_init
from lgeclip.models.zeroshot import no_autocast, prompt_set
from lgeclip.synth.templates import level_suffix

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
        if cfg.prompt_anchor_weight > 0:
            # [threshold, bandwidth] of the training captions' prompt scores (models.anchors); zeros = not fitted
            self.register_buffer("anchor_threshold", torch.zeros(2))
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

    def prompt_sides(self, levels: list[str], prompts: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
        """Per image the [positive, negative] side of the prompt set ``prompts`` at its level, each side the
        normalised mean of its members' normalised embeddings (as ``ZeroShotClassifier``): ``(features (B, 2, p),
        reference (B, 2, H))`` (reference: frozen text features, see ``TextTower.forward_with_reference``)."""
        pos, neg = prompt_set(prompts)
        uniq = sorted(set(levels))
        texts = [f"{t} {level_suffix(lv)}" for lv in uniq for t in (*pos, *neg)]  # U (P + N) prompts
        with no_autocast():  # fp32: the two prompts differ by one word, bf16 would blur that difference
            projected, reference = self.text.forward_with_reference(texts)  # (U(P+N), p), (U(P+N), H)

        def sides(x: torch.Tensor) -> torch.Tensor:
            x = F.normalize(x.float(), dim=-1).view(len(uniq), len(pos) + len(neg), -1)  # (U, P + N, d)
            return F.normalize(torch.stack([x[:, : len(pos)].mean(1), x[:, len(pos):].mean(1)], dim=1), dim=-1)

        idx = torch.tensor([uniq.index(lv) for lv in levels], device=projected.device)  # (B,)
        return sides(projected)[idx], sides(reference)[idx]  # (B, 2, p), (B, 2, H)

    @torch.no_grad()
    def _reference_scores(self, reference: torch.Tensor, levels: list[str]) -> torch.Tensor:
        """(B,) cos(c, P+) - cos(c, P-) of frozen caption features (B, H) against the sides of the anchor target
        prompt set at each caption's level (the one text score both the threshold fit and the targets use)."""
        with no_autocast():
            _, sides = self.prompt_sides(levels, self.cfg.prompt_anchor_target_prompts)  # (B, 2, H)
            sims = torch.einsum("bh,bkh->bk", F.normalize(reference.float(), dim=-1), sides)  # (B, 2)
        return sims[:, 0] - sims[:, 1]

    @torch.no_grad()
    def caption_prompt_scores(self, captions: list[str], levels: list[str], batch_size: int = 256) -> torch.Tensor:
        """(N,) frozen-text score cos(c, P+) - cos(c, P-) of each caption against the sides of the anchor target
        prompt set (``cfg.prompt_anchor_target_prompts``) at its level."""
        out = []
        for i in range(0, len(captions), batch_size):
            with no_autocast():
                _, ref = self.text.forward_with_reference(captions[i: i + batch_size])  # (b, H)
            out.append(self._reference_scores(ref, levels[i: i + batch_size]))
        return torch.cat(out) if out else torch.zeros(0)

    def fit_prompt_anchors(self, captions: list[str], levels: list[str], weights=None) -> dict:
        """Fit the anchor threshold to the training captions (with their slice levels; ``models.anchors``);
        returns what was fitted. Text only: no label is involved."""
        if self.cfg.prompt_anchor_weight <= 0:
            raise ValueError("fit_prompt_anchors needs model.prompt_anchor_weight > 0")
        scores = self.caption_prompt_scores(list(captions), list(levels)).cpu().numpy()
        fit = valley_threshold(scores, weights)
        self.anchor_threshold.copy_(torch.tensor([fit["threshold"], fit["bandwidth"]], dtype=torch.float32))
        return fit | {"n_captions": int(scores.size)}

    def forward(self, images: torch.Tensor, texts: list[str] | Tokens,
                hard_negatives: list[str | None] | None = None,
                levels: list[str] | None = None) -> dict[str, torch.Tensor | None]:
        """Dict with keys ``FORWARD_KEYS``; caption_logits (B, L-1, V) / caption_labels (B, L-1) are None
        without decoder (caption_weight 0). Labels hold -100 at padding.

        ``hard_negatives``: per image an extra text that must NOT match it (e.g. its caption negated) or None;
        adds ``hard_negative_features`` (H, p) and ``hard_negative_rows`` (H,) (the image each belongs to).
        With ``cfg.soft_target_weight > 0`` adds ``text_reference`` (B, H): normalised frozen-layer text features.
        With ``cfg.prompt_anchor_weight > 0`` and ``levels`` (the B slice levels) adds ``anchor_logits`` (B, 2):
        scale x cos(image, [positive, negative] side of ``cfg.prompt_anchor_prompts`` at its level: the zero-shot
        rule), and ``anchor_targets`` (B, 2): [q, 1 - q], q = P(scar side) of the caption's frozen-text score
        against ``cfg.prompt_anchor_target_prompts`` under the fitted threshold (detached)."""
        n_texts = len(texts["input_ids"] if isinstance(texts, dict) else texts)
        if n_texts != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {n_texts} captions")
        fmap = self.visual.forward_features(images)  # (B, 1024, h, w)
        image_features = F.normalize(self.visual.proj(self.visual.pool(fmap)), dim=-1)  # (B, p)
        text_reference = None
        anchors = self.cfg.prompt_anchor_weight > 0 and levels is not None
        if anchors and len(levels) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(levels)} levels")
        if anchors and not bool(self.anchor_threshold[1] > 0):
            raise ValueError("prompt anchors are not fitted: call fit_prompt_anchors(training captions) first")
        if self.cfg.soft_target_weight > 0 or anchors:
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
        if text_reference is not None and self.cfg.soft_target_weight > 0:
            out["text_reference"] = text_reference
        if anchors:
            levels = list(levels)
            prompt_feats, _ = self.prompt_sides(levels, self.cfg.prompt_anchor_prompts)  # (B, 2, p)
            with no_autocast():
                sims = torch.einsum("bp,bkp->bk", image_features.float(), prompt_feats)  # (B, 2)
                out["anchor_logits"] = out["logit_scale"].float() * sims
            # targets: no graph (detached, frozen text), the same score the threshold was fitted on
            q = anchor_posterior(self._reference_scores(text_reference, levels), self.anchor_threshold)  # (B,)
            out["anchor_targets"] = torch.stack([q, 1 - q], dim=-1)  # (B, 2)
        if hard_negatives is not None:
            rows = [i for i, t in enumerate(hard_negatives) if t]
            feats = (self.encode_text([hard_negatives[i] for i in rows]) if rows
                     else image_features.new_zeros((0, image_features.shape[1])))  # (H, p)
            out["hard_negative_features"] = feats
            out["hard_negative_rows"] = torch.tensor(rows, dtype=torch.long, device=image_features.device)  # (H,)
        return out
