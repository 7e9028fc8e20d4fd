"""Temporal fusion transformer: one token sequence per ground position -> one fused vector.

SkySense (Sec. 3.1, "factorized spatio-temporal encoder") fuses, at every position of the
common grid, the tokens of all dates of all streams with a small transformer; a learned
extra token is prepended to each sequence and its output is the fused feature. Tokens
that must not count (padding dates, cloudy observations, absent streams) are removed by a
key-padding mask: their attention weight is exactly zero, so changing their values cannot
change the result. The extra token is never masked, so a position whose every
observation is masked still attends to something (itself) and yields a finite feature.

Cost. With N sequences (``B * h * w`` positions) of length L (1 extra + S observation
tokens), D channels and H heads, one layer stores about ``N * L * D * (4 + 2 * ffn_ratio)``
activations and an attention matrix of ``N * H * L * L`` floats. The last layer computes
only the extra token's query (``N * H * L`` scores), since the other outputs are unused.
``chunk_size`` bounds the transient memory by running the sequences in chunks; in
training the chunks' activations are still kept for the backward pass unless
``checkpoint_chunks`` recomputes them there (one extra forward of the transformer).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["TemporalEncoderLayer", "TemporalFusionTransformer"]


class TemporalEncoderLayer(nn.Module):
    """Pre-norm transformer layer (self-attention + MLP) with a key-padding mask.

    Args:
        embed_dims: D.
        num_heads: attention heads (must divide D).
        ffn_ratio: hidden size of the MLP as a multiple of D.
        dropout: dropout on the attention weights and the MLP output.
    """

    def __init__(self, embed_dims: int, num_heads: int, ffn_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims {embed_dims} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm_attn = nn.LayerNorm(embed_dims)
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        self.norm_ffn = nn.LayerNorm(embed_dims)
        hidden = int(embed_dims * ffn_ratio)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, embed_dims), nn.Dropout(dropout))

    def forward(self, tokens: Tensor, attend: Tensor, first_only: bool = False) -> Tensor:
        """Update the tokens.

        Args:
            tokens: (N, L, D).
            attend: (N, L) bool, True for the keys that may be attended to.
            first_only: compute (and return) only the first token's output.

        Returns:
            (N, L, D), or (N, 1, D) when `first_only`.
        """
        n, length, dims = tokens.shape
        heads = self.num_heads
        q, k, v = self.qkv(self.norm_attn(tokens)).chunk(3, dim=-1)
        residual = tokens
        if first_only:
            q, residual = q[:, :1], tokens[:, :1]

        def split(x: Tensor) -> Tensor:  # (N, l, D) -> (N, heads, l, D / heads)
            return x.reshape(n, x.shape[1], heads, dims // heads).transpose(1, 2)

        mask = attend[:, None, None, :]  # (N, 1, 1, L): the same keys for every query
        attended = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(n, q.shape[1], dims)
        out = residual + self.out_proj(attended)
        return out + self.ffn(self.norm_ffn(out))


class TemporalFusionTransformer(nn.Module):
    """Fuse each sequence of observation tokens into one vector via a learned extra token.

    Args:
        embed_dims: D.
        num_layers: transformer layers (SkySense: 24 for the paper model; ours 2).
        num_heads: attention heads.
        ffn_ratio: MLP hidden size / D.
        dropout: attention and MLP dropout.
        chunk_size: process at most this many sequences at once (None = all).
        checkpoint_chunks: in training, recompute each chunk in the backward pass instead
            of storing its activations (see the module docstring for the cost).
    """

    def __init__(self, embed_dims: int, num_layers: int = 2, num_heads: int = 4,
                 ffn_ratio: float = 4.0, dropout: float = 0.0,
                 chunk_size: Optional[int] = None, checkpoint_chunks: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.embed_dims = embed_dims
        self.chunk_size = chunk_size
        self.checkpoint_chunks = checkpoint_chunks
        self.extra_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        nn.init.trunc_normal_(self.extra_token, std=0.02)
        self.layers = nn.ModuleList(TemporalEncoderLayer(embed_dims, num_heads, ffn_ratio, dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(embed_dims)

    def _fuse(self, tokens: Tensor, attend: Tensor) -> Tensor:
        """(n, S, D) tokens, (n, S) attend -> (n, D)."""
        n = tokens.shape[0]
        x = torch.cat([self.extra_token.expand(n, -1, -1).to(tokens.dtype), tokens], dim=1)
        # The extra token is always a valid key: no row of the attention is empty (no NaN).
        attend = torch.cat([attend.new_ones(n, 1), attend], dim=1)
        for i, layer in enumerate(self.layers):
            x = layer(x, attend, first_only=i == len(self.layers) - 1)
        return self.norm(x[:, 0])

    def forward(self, tokens: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """Fuse every sequence.

        Args:
            tokens: (N, S, D) observation tokens (encodings already added), N sequences.
            padding_mask: (N, S) bool, True where a token must be ignored (PyTorch's
                ``key_padding_mask`` convention); None = use every token.

        Returns:
            (N, D): the extra token's output for every sequence.
        """
        if tokens.dim() != 3 or tokens.shape[-1] != self.embed_dims:
            raise ValueError(f"tokens must be (N, S, {self.embed_dims}), got {tuple(tokens.shape)}")
        n, length = tokens.shape[:2]
        if padding_mask is None:
            attend = tokens.new_ones(n, length, dtype=torch.bool)
        else:
            if padding_mask.shape != (n, length):
                raise ValueError(f"padding_mask must be {(n, length)}, got "
                                 f"{tuple(padding_mask.shape)}")
            attend = ~padding_mask.bool()
        chunk = self.chunk_size or max(n, 1)
        outputs = []
        for start in range(0, n, chunk):
            part, part_attend = tokens[start:start + chunk], attend[start:start + chunk]
            if self.checkpoint_chunks and self.training and torch.is_grad_enabled():
                outputs.append(checkpoint(self._fuse, part, part_attend, use_reentrant=False))
            else:
                outputs.append(self._fuse(part, part_attend))
        return torch.cat(outputs, dim=0) if outputs else tokens.new_zeros(0, self.embed_dims)
