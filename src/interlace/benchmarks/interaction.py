"""Interaction-core benchmark at DeepInteraction++ scale
(`tools/analysis_tools/benchmark.py interaction`).

Per component (correspondence gathers, DualStreamEncoder with 2 layers, decoder with 200
queries and 5 layers): forward, and forward + backward, in fp32 and under bf16 autocast.
Then sampling-based image-to-LiDAR alignment against dense cross-attention from the same
pillar queries to every image token, at 20k pillars and at 4x the pillars (80k, on a
0.3 m grid), to show that the sampled cost grows linearly with the pillars.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from .common import BenchCase, Prepared
from .interaction_scene import make_scene

CHANNELS = 128
HEADS = 8


def _scene(scale: str, pillars: int = 20_000, bev: int = 180):
    if scale == "smoke":  # tiny: 36 x 36 BEV, images at 1/8 of the size
        return make_scene(num_pillars=max(pillars // 400, 50), bev_size=bev // 5,
                          channels=32, image_scale=0.125)
    return make_scene(num_pillars=pillars, bev_size=bev, channels=CHANNELS)


def _autocast(dtype: str):
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run(module_call: Callable[[], list[torch.Tensor]], params: list[torch.nn.Parameter],
         backward: bool, dtype: str) -> Callable[[], None]:
    def step() -> None:
        for p in params:
            p.grad = None
        with torch.set_grad_enabled(backward), _autocast(dtype):
            outputs = module_call()
            loss = sum(o.float().mean() for o in outputs)
        if backward:
            loss.backward()
    return step


def _encoder_case(backward: bool, dtype: str) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        from interlace.core.interaction import DualStreamEncoder
        scene = _scene(scale)
        channels = scene.a.channels
        encoder = DualStreamEncoder(num_layers=2, embed_dims=channels, num_heads=HEADS,
                                    ffn_dims=4 * channels, num_levels_a=2, num_levels_b=2,
                                    key_pos_dims_a=4, key_pos_dims_b=2, spreading="auto")
        if backward:
            for level in scene.a.levels + scene.b.levels:
                level.requires_grad_(True)

        def call() -> list[torch.Tensor]:
            a_out, b_out = encoder(scene.a, scene.b, scene.correspondence)
            return a_out.levels + b_out.levels
        return Prepared(ours=_run(call, list(encoder.parameters()), backward, dtype),
                        notes=f"{sum(p.numel() for p in encoder.parameters()) / 1e6:.2f} M params")
    return setup


def _box_footprint(predictions: dict, positions: torch.Tensor):
    """Driving-style footprint: metric size and height from the 'dim' (log l, w, h) and
    'height' heads, yaw from 'rot' (sin, cos); 108 m map."""
    from interlace.core.interaction import Footprint
    dims = predictions["dim"].exp().clamp(0.3, 20.0)
    yaw = torch.atan2(predictions["rot"][..., 0], predictions["rot"][..., 1])
    return Footprint(center=positions, size=dims[..., :2] / 108.0, yaw=yaw,
                     z=predictions["height"][..., 0], height=dims[..., 2])


def _decoder_case(backward: bool, dtype: str) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        from interlace.core.interaction import PredictiveInteractionDecoder
        scene = _scene(scale)
        channels = scene.a.channels
        decoder = PredictiveInteractionDecoder(
            num_classes=10, heads=dict(center=2, height=1, dim=3, rot=2, vel=2),
            embed_dims=channels, num_queries=200 if scale == "full" else 20,
            layer_streams=("a", "b", "a", "b", "a"), footprint_fn=_box_footprint,
            num_heads=HEADS, ffn_dims=4 * channels)
        if backward:
            for level in scene.a.levels + scene.b.levels:
                level.requires_grad_(True)

        def call() -> list[torch.Tensor]:
            out = decoder(scene.a, scene.b, scene.correspondence)
            return [t for layer in out.layers for k, t in layer.items()
                    if k not in ("seen",) and torch.is_tensor(t) and t.is_floating_point()]
        return Prepared(ours=_run(call, list(decoder.parameters()), backward, dtype),
                        notes=f"{sum(p.numel() for p in decoder.parameters()) / 1e6:.2f} M params")
    return setup


def _gathers(scale: str) -> Prepared:
    scene = _scene(scale)

    def ours() -> None:
        c = scene.correspondence
        c.gather_b_for_a(scene.a, scene.b)
        c.gather_a_for_b(scene.a, scene.b)
        c.ray_layout(scene.a, scene.b)
    return Prepared(ours=ours, notes="gather_b_for_a + gather_a_for_b + ray_layout")


def _alignment_case(pillars: int, bev: int) -> Callable[[str], Prepared]:
    """Image-to-LiDAR alignment: gather + pair-wise attention, against dense attention
    from the same non-empty pillar queries to all stride-4 image tokens of the 6 views."""
    def setup(scale: str) -> Prepared:
        from interlace.core.interaction import SampledCrossAttention
        scene = _scene(scale, pillars, bev)
        channels = scene.a.channels
        attention = SampledCrossAttention(channels, HEADS, key_pos_dims=4).eval()
        queries = scene.a.flatten()
        pillar_queries = queries[:, scene.pillar_cells]                  # (1, P, C)
        tokens = scene.b.levels[0].flatten(2).transpose(1, 2).reshape(1, -1, channels)

        @torch.no_grad()
        def ours() -> None:
            gathered = scene.correspondence.gather_b_for_a(scene.a, scene.b)
            attention(queries, gathered)

        @torch.no_grad()
        def reference() -> None:
            # Same projections as ours; chunked over queries so the logits fit in memory.
            k = attention.key_proj(tokens).view(1, -1, HEADS, channels // HEADS).transpose(1, 2)
            v = attention.value_proj(tokens).view(1, -1, HEADS, channels // HEADS).transpose(1, 2)
            for chunk in pillar_queries.split(1024, dim=1):
                q = attention.query_proj(chunk).view(1, -1, HEADS, channels // HEADS).transpose(1, 2)
                out = F.scaled_dot_product_attention(q, k, v)
                attention.output_proj(out.transpose(1, 2).reshape(1, -1, channels))
        keys = tokens.shape[1]
        return Prepared(ours=ours, reference=reference,
                        reference_name=f"dense cross-attention ({keys} keys)",
                        notes=f"{pillars} pillars on a {bev}x{bev} grid")
    return setup


CASES: list[BenchCase] = [
    BenchCase("gathers", "projection correspondence: both gathers + ray layout (fp32)", _gathers),
    *[BenchCase(f"encoder_{'fwd_bwd' if bwd else 'fwd'}_{dt}",
                f"DualStreamEncoder 2 layers x 128 ch, BEV 180^2+90^2, 6 views 112x200+56x100, "
                f"{'forward + backward' if bwd else 'forward'}, {dt}", _encoder_case(bwd, dt),
                repeats=1)
      for dt in ("fp32", "bf16") for bwd in (False, True)],
    *[BenchCase(f"decoder_{'fwd_bwd' if bwd else 'fwd'}_{dt}",
                f"PredictiveInteractionDecoder 200 queries, 5 layers (a,b,a,b,a), "
                f"{'forward + backward' if bwd else 'forward'}, {dt}", _decoder_case(bwd, dt),
                repeats=2)
      for dt in ("fp32", "bf16") for bwd in (False, True)],
    BenchCase("alignment_20k", "image-to-LiDAR sampled alignment, 20k pillars (fp32 forward)",
              _alignment_case(20_000, 180), repeats=1),
    BenchCase("alignment_80k", "image-to-LiDAR sampled alignment, 80k pillars = 4x (fp32 forward)",
              _alignment_case(80_000, 360), repeats=1),
]
