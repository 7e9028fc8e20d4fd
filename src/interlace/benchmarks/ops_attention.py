"""Benchmark cases for the pure-PyTorch attention ops in `interlace.core.ops`.

* ``sampled_attention``: multi-scale sampled attention from every cell of a 180x180x128
  BEV map into two levels (180x180 and 90x90), against dense softmax attention of every
  query over all keys of both levels.
* ``window_attention_9x9``: 9x9 local window attention on the same map, against dense
  attention with the window as a boolean mask.

The dense references run over query chunks so they fit in about 2 GB.
"""
from __future__ import annotations

import math

import torch

from .common import BenchCase, Prepared

from interlace.core.ops.sampled_attention import multi_scale_sampled_attention
from interlace.core.ops.window_attention import local_window_attention, local_window_attention_dense

# (map side, channels, heads) per scale; the second sampled level is half the side.
_SCALES = {"full": (180, 128, 8), "smoke": (12, 32, 4)}
_POINTS = 4
_KERNEL = 9
# Queries per dense chunk. Sampled: 1024 x 40500 keys x 8 heads x 4 B = 1.3 GB of logits,
# softmax-ed in place. Window: the masked softmax holds about four 512 x 32400 x 8 buffers
# (logits, filled, softmax, masked), 2.1 GB.
_SAMPLED_CHUNK = {"full": 1024, "smoke": 64}
_WINDOW_CHUNK = {"full": 512, "smoke": 64}


def _scale(scale: str) -> tuple[int, int, int]:
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(_SCALES)}")
    return _SCALES[scale]


def _dense_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     chunk: int) -> torch.Tensor:
    """(B, M, Nq, D) x (B, M, Nk, D) softmax attention, a chunk of queries at a time.

    Softmax is done in place on the logits so a chunk holds one Nq x Nk buffer.
    """
    scale = 1.0 / math.sqrt(query.shape[-1])
    outputs = []
    for start in range(0, query.shape[2], chunk):
        logits = (query[:, :, start:start + chunk] * scale) @ key.transpose(-1, -2)
        logits -= logits.amax(-1, keepdim=True)
        logits.exp_()
        logits /= logits.sum(-1, keepdim=True)
        outputs.append(logits @ value)
    return torch.cat(outputs, dim=2)


def _setup_sampled(scale: str) -> Prepared:
    side, channels, heads = _scale(scale)
    dims = channels // heads
    shapes = torch.tensor([[side, side], [side // 2, side // 2]])
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    queries = side * side
    levels = shapes.shape[0]
    gen = torch.Generator().manual_seed(0)
    value = torch.randn(1, keys, heads, dims, generator=gen)
    query = torch.randn(1, queries, heads, dims, generator=gen)
    # Reference points on the cell centres plus a few pixels of offset, as a trained
    # model would produce; a few land outside the map.
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ref = torch.stack([(xs.flatten() + 0.5) / side, (ys.flatten() + 0.5) / side], dim=-1)
    offsets = torch.randn(1, queries, heads, levels, _POINTS, 2, generator=gen) * (3.0 / side)
    locations = ref.view(1, queries, 1, 1, 1, 2) + offsets
    weights = torch.randn(1, queries, heads, levels * _POINTS, generator=gen).softmax(-1)
    weights = weights.view(1, queries, heads, levels, _POINTS)

    def ours() -> torch.Tensor:
        with torch.no_grad():
            return multi_scale_sampled_attention(value, shapes, locations, weights)

    q = query.transpose(1, 2)
    kv = value.transpose(1, 2)
    chunk = _SAMPLED_CHUNK[scale]

    def reference() -> torch.Tensor:
        with torch.no_grad():
            return _dense_attention(q, kv, kv, chunk)

    return Prepared(ours=ours, reference=reference, reference_name="dense attention over all keys",
                    notes=f"Q={queries}, keys={keys} over {levels} levels, {heads} heads, "
                          f"{_POINTS} points/level, dense chunk {chunk} queries")


def _setup_window(scale: str) -> Prepared:
    side, channels, heads = _scale(scale)
    dims = channels // heads
    gen = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, heads, side, side, dims, generator=gen) for _ in range(3))
    chunk = _WINDOW_CHUNK[scale]

    def ours() -> torch.Tensor:
        with torch.no_grad():
            return local_window_attention(query, key, value, _KERNEL)

    def reference() -> torch.Tensor:
        with torch.no_grad():
            return local_window_attention_dense(query, key, value, _KERNEL, chunk_size=chunk)

    return Prepared(ours=ours, reference=reference, reference_name="dense masked attention",
                    notes=f"{side}x{side} map, {heads} heads x {dims} dims, k={_KERNEL}, "
                          f"dense chunk {chunk} queries")


CASES: list[BenchCase] = [
    BenchCase(
        name="sampled_attention",
        description="multi-scale sampled attention, 180x180x128 queries into 180x180 + 90x90 "
                    "levels, 8 heads, 4 points/level",
        setup=_setup_sampled,
        tags=["ops", "attention"],
    ),
    BenchCase(
        name="window_attention_9x9",
        description="9x9 local window attention on a 180x180x128 map, 8 heads",
        setup=_setup_window,
        tags=["ops", "attention"],
    ),
]
