"""Local window (neighbourhood) attention on a 2D map in pure PyTorch.

Every position attends to the k x k neighbourhood centred on it (optionally dilated).
Neighbours that fall outside the map are *masked out* of the softmax rather than read
as zero keys, so a corner position spreads its attention over the in-map neighbours
only. The neighbourhoods are gathered with strided views of a padded copy of the keys
and values, a few query rows at a time, so the N x N matrix (N = H * W) is never built
and peak memory stays bounded whatever the map size.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["LocalWindowAttention", "local_window_attention", "local_window_attention_dense"]

# Default per-chunk budget for the gathered key (and value) neighbourhoods, in elements:
# 2**24 float32 elements = 64 MiB each.
_CHUNK_ELEMENTS = 1 << 24


def _check(query: Tensor, key: Tensor, value: Tensor, kernel_size: int, dilation: int,
           key_padding_mask: Optional[Tensor]) -> None:
    if query.dim() != 5:
        raise ValueError(f"expected (B, num_heads, H, W, head_dims), got {tuple(query.shape)}")
    if key.shape != query.shape or value.shape[:-1] != query.shape[:-1]:
        raise ValueError(f"query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                         f"{tuple(value.shape)} must share (B, num_heads, H, W)")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if key_padding_mask is not None:
        b, _, h, w, _ = query.shape
        if tuple(key_padding_mask.shape) != (b, h, w):
            raise ValueError(f"key_padding_mask must be {(b, h, w)}, got "
                             f"{tuple(key_padding_mask.shape)}")


def _masked_softmax(logits: Tensor, ignore: Tensor) -> Tensor:
    # A finite fill instead of -inf keeps rows whose every key is ignored free of NaN
    # (forward and backward); multiplying by the keep-mask then makes such rows output
    # zero, and elsewhere the filled entries already underflow to exactly 0.
    fill = torch.finfo(logits.dtype).min
    weights = logits.masked_fill(ignore, fill).softmax(-1)
    return weights * (~ignore).to(weights.dtype)


def _neighbourhoods(padded: Tensor, row0: int, rows: int, kernel_size: int, dilation: int) -> Tensor:
    """(..., Hp, Wp, D) padded map -> (..., rows, W, k*k, D) neighbourhoods of rows."""
    span = (kernel_size - 1) * dilation + 1
    block = padded[..., row0:row0 + rows + span - 1, :, :]
    # unfold gives (..., rows, W, D, span, span) as a view; the dilation picks every
    # `dilation`-th tap of each span.
    windows = block.unfold(-3, span, 1).unfold(-3, span, 1)[..., ::dilation, ::dilation]
    windows = windows.movedim(-3, -1)  # (..., rows, W, k, k, D)
    return windows.flatten(-3, -2)


def local_window_attention(query: Tensor, key: Tensor, value: Tensor, kernel_size: int,
                           dilation: int = 1, key_padding_mask: Optional[Tensor] = None,
                           chunk_size: Optional[int] = None) -> Tensor:
    """Softmax attention of each position over its k x k neighbourhood.

    Args:
        query: (B, num_heads, H, W, head_dims).
        key: (B, num_heads, H, W, head_dims).
        value: (B, num_heads, H, W, value_dims).
        kernel_size: odd k; the window spans offsets -k//2 .. k//2 (times dilation).
        dilation: spacing between window taps.
        key_padding_mask: (B, H, W) bool, True marks a key to ignore. A position whose
            whole window is ignored outputs zeros.
        chunk_size: query rows processed at once; None picks it so the gathered
            neighbourhoods of a chunk hold about 16M elements.

    Returns:
        (B, num_heads, H, W, value_dims). Logits are scaled by 1/sqrt(head_dims).
    """
    _check(query, key, value, kernel_size, dilation, key_padding_mask)
    batch, heads, height, width, dims = query.shape
    radius = (kernel_size // 2) * dilation
    taps = kernel_size * kernel_size
    if chunk_size is None:
        per_row = batch * heads * width * taps * max(dims, value.shape[-1])
        chunk_size = max(1, _CHUNK_ELEMENTS // per_row)
    chunk_size = max(1, min(int(chunk_size), height))

    # Zero-padded keys/values are only placeholders: the padded "ignore" map below
    # removes them from the softmax.
    pad = (0, 0, radius, radius, radius, radius)
    key_p = F.pad(key, pad)
    value_p = F.pad(value, pad)
    if key_padding_mask is None:
        ignore = torch.zeros(1, height, width, dtype=torch.bool, device=query.device)
    else:
        ignore = key_padding_mask.to(torch.bool)
    ignore_p = F.pad(ignore, (radius, radius, radius, radius), value=True).unsqueeze(-1)

    scale = 1.0 / math.sqrt(dims)
    outputs = []
    for row0 in range(0, height, chunk_size):
        rows = min(chunk_size, height - row0)
        keys = _neighbourhoods(key_p, row0, rows, kernel_size, dilation)  # (B, M, r, W, T, D)
        values = _neighbourhoods(value_p, row0, rows, kernel_size, dilation)
        skip = _neighbourhoods(ignore_p, row0, rows, kernel_size, dilation).squeeze(-1)
        q = query[:, :, row0:row0 + rows].unsqueeze(-1) * scale  # (B, M, r, W, D, 1)
        logits = torch.matmul(keys, q).squeeze(-1)  # (B, M, r, W, T)
        weights = _masked_softmax(logits, skip.unsqueeze(1))
        outputs.append(torch.matmul(weights.unsqueeze(-2), values).squeeze(-2))
    return torch.cat(outputs, dim=2)


def window_mask(height: int, width: int, kernel_size: int, dilation: int = 1,
                query_rows: Optional[slice] = None, device: Optional[torch.device] = None) -> Tensor:
    """(Nq, H*W) bool, True where the key lies in the query's window (queries row-major;
    ``query_rows`` restricts them to a slice of flattened positions)."""
    positions = torch.arange(height * width, device=device)
    queries = positions if query_rows is None else positions[query_rows]
    qy, qx = (queries // width)[:, None], (queries % width)[:, None]
    ky, kx = (positions // width)[None], (positions % width)[None]
    reach = (kernel_size // 2) * dilation
    dy, dx = ky - qy, kx - qx
    return ((dy.abs() <= reach) & (dx.abs() <= reach)
            & (dy % dilation == 0) & (dx % dilation == 0))


def local_window_attention_dense(query: Tensor, key: Tensor, value: Tensor, kernel_size: int,
                                 dilation: int = 1, key_padding_mask: Optional[Tensor] = None,
                                 chunk_size: Optional[int] = None) -> Tensor:
    """Dense reference for :func:`local_window_attention`.

    Full query x key attention over all N = H*W positions with a boolean window mask;
    ``chunk_size`` (queries per chunk, None = all at once) bounds memory to
    chunk_size x N logits per head. Same arguments, shapes and conventions.
    """
    _check(query, key, value, kernel_size, dilation, key_padding_mask)
    batch, heads, height, width, dims = query.shape
    n = height * width
    q = query.reshape(batch, heads, n, dims) * (1.0 / math.sqrt(dims))
    k = key.reshape(batch, heads, n, dims)
    v = value.reshape(batch, heads, n, value.shape[-1])
    padded = None
    if key_padding_mask is not None:
        padded = key_padding_mask.reshape(batch, 1, 1, n).to(torch.bool)
    step = n if chunk_size is None else chunk_size
    outputs = []
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        ignore = ~window_mask(height, width, kernel_size, dilation, rows, query.device)
        ignore = ignore[None, None]
        if padded is not None:
            ignore = ignore | padded
        logits = q[:, :, rows] @ k.transpose(-1, -2)
        outputs.append(_masked_softmax(logits, ignore) @ v)
    return torch.cat(outputs, dim=2).reshape(batch, heads, height, width, value.shape[-1])


@MODELS.register_module()
class LocalWindowAttention(nn.Module):
    """Multi-head local window attention over a (B, C, H, W) feature map.

    Args:
        embed_dims: channels C; must divide by ``num_heads``.
        num_heads: attention heads.
        kernel_size: odd window size k.
        dilation: spacing between window taps.
        qkv_bias: bias in the query/key/value projection.
    """

    def __init__(self, embed_dims: int, num_heads: int = 8, kernel_size: int = 9,
                 dilation: int = 1, qkv_bias: bool = True) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: Tensor, key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Args:
            x: (B, C, H, W).
            key_padding_mask: (B, H, W) bool, True marks a position no one attends to.

        Returns:
            (B, C, H, W), the projected attention output (no residual).
        """
        batch, channels, height, width = x.shape
        heads = self.num_heads
        qkv = self.qkv(x.permute(0, 2, 3, 1))  # (B, H, W, 3C)
        qkv = qkv.view(batch, height, width, 3, heads, channels // heads).permute(3, 0, 4, 1, 2, 5)
        out = local_window_attention(qkv[0], qkv[1], qkv[2], self.kernel_size, self.dilation,
                                     key_padding_mask)  # (B, M, H, W, D)
        out = self.proj(out.permute(0, 2, 3, 1, 4).reshape(batch, height, width, channels))
        return out.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"embed_dims={self.embed_dims}, num_heads={self.num_heads}, "
                f"kernel_size={self.kernel_size}, dilation={self.dilation}")
