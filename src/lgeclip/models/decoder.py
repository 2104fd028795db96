"""CoCa-style caption decoder: causal self-attention over caption token ids + cross-attention to image tokens.

It sees only token ids (its own embeddings) and the vision encoder's spatial map, never the bidirectional text
encoder's states (those would leak future tokens). Default size: width 256, 2 layers, 4 heads, MLP 4x; the
output layer reuses the token embedding matrix (tied; one tensor in the state dict, so safetensors-safe).
Image tokens: the (B, 1024, h, w) map -> (B, hw, 1024) -> LayerNorm -> Linear to D, plus a fixed 2D sinusoidal
position code (works at any grid size: 2x2 at 64 px, 3x3 at 112 px, 7x7 at 224 px).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 2D sine-cosine position code (h * w, dim); dim must be divisible by 4."""
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    q = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(q, dtype=torch.float32, device=device) / q)  # (q,)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                                torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    r = rows.reshape(-1, 1) * freq  # (hw, q)
    c = cols.reshape(-1, 1) * freq  # (hw, q)
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1).to(dtype or torch.float32)  # (hw, dim)


class Attention(nn.Module):
    """Multi-head attention (self or cross) with ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        # x: (B, T, D); context: (B, N, D) for cross-attention, else x itself
        b, t, d = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, h, T, d/h)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B,h,N,.)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, h, T, d/h)
        return self.out(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention -> cross-attention to image tokens -> MLP, each residual."""

    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.ln2, self.cross_attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.ln3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D); image_tokens: (B, N, D)
        x = x + self.self_attn(self.ln1(x), causal=True)
        x = x + self.cross_attn(self.ln2(x), context=image_tokens)
        return x + self.mlp(self.ln3(x))  # (B, T, D)


class CaptionDecoder(nn.Module):
    """Predicts the next caption token from previous token ids and the image's spatial feature map."""

    def __init__(self, vocab_size: int, max_length: int, image_channels: int = 1024, width: int = 256,
                 layers: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if width % heads or width % 4:
            raise ValueError(f"decoder width {width} must be divisible by heads ({heads}) and by 4")
        self.vocab_size, self.max_length, self.width = vocab_size, max_length, width
        self.tok_emb = nn.Embedding(vocab_size, width)  # also the output matrix (tied, as in GPT-2 / nanoGPT)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        self.pos_emb = nn.Parameter(torch.zeros(max_length, width))
        nn.init.normal_(self.pos_emb, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.img_norm = nn.LayerNorm(image_channels)
        self.img_proj = nn.Linear(image_channels, width)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head_bias = nn.Parameter(torch.zeros(vocab_size))

    def image_tokens(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) feature map -> (B, hw, D) image tokens with 2D position code."""
        b, c, h, w = fmap.shape
        x = self.img_proj(self.img_norm(fmap.flatten(2).transpose(1, 2)))  # (B, hw, D)
        return x + sincos_2d(h, w, self.width, device=x.device, dtype=x.dtype)

    def forward(self, input_ids: torch.Tensor, fmap: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
        # input_ids: (B, T) long token ids; fmap: (B, C, h, w) vision feature map; vocab: (A,) sorted token ids
        # (None = all V): logits over those tokens only, the in-batch vocabulary that makes the 30k-word output
        # layer affordable on a CPU
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"CaptionDecoder takes token ids, got dtype {input_ids.dtype}")
        t = input_ids.shape[1]
        if t > self.max_length:
            raise ValueError(f"caption of {t} tokens exceeds the decoder's max_length {self.max_length}")
        img = self.image_tokens(fmap)  # (B, hw, D)
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb[:t])  # (B, T, D)
        for block in self.blocks:
            x = block(x, img)  # (B, T, D)
        if vocab is None:
            return F.linear(self.ln_f(x), self.tok_emb.weight, self.head_bias)  # (B, T, V)
        return F.linear(self.ln_f(x), self.tok_emb.weight[vocab], self.head_bias[vocab])  # (B, T, A)


def batch_vocabulary(labels: torch.Tensor, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vocab, labels')``: the sorted token ids that occur as labels in the batch (A,) and the labels (B, T)
    re-indexed into it (``ignore_index`` kept). Softmax over the in-batch vocabulary is a sampled softmax whose
    negatives are the other tokens of the batch's captions."""
    keep = labels != ignore_index
    vocab = torch.unique(labels[keep])  # (A,) sorted
    remapped = torch.full_like(labels, ignore_index)
    remapped[keep] = torch.searchsorted(vocab, labels[keep])
    return vocab, remapped


def shift_for_captioning(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing: inputs ids[:, :-1] and labels ids[:, 1:] with padding set to ``ignore_index``.

    With BERT-style tokenizers the first token ([CLS]) acts as begin-of-sequence and [SEP] as end-of-sequence.
    """
    inputs = input_ids[:, :-1]  # (B, L-1)
    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, ignore_index)  # (B, L-1)
    return inputs, labels
