"""DualStreamEncoder: DeepInteraction++'s representational interaction encoder, written
once for any pair of streams and any correspondence (docs/architecture.md, "The interaction core").

Each stream keeps its own representation; a stack of :class:`DualStreamEncoderLayer`
lets them exchange information (intra-modal attention, cross-modal sampled attention,
global dense spreading), see :mod:`interlace.core.interaction.encoder_layer`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from torch import nn

from interlace.core.engine.registry import MODELS

from .correspondence import Correspondence
from .encoder_layer import DualStreamEncoderLayer
from .streams import StreamFeatures

__all__ = ["DualStreamEncoder"]


@MODELS.register_module()
class DualStreamEncoder(nn.Module):
    """A stack of dual-stream interaction layers.

    Reference settings (DeepInteraction++ on nuScenes): 2 layers, width 128, FFN 512,
    8 heads; A = LiDAR BEV (1 level), B = 6 camera views (2 FPN levels).

    Args:
        num_layers: number of layers (0 = identity).
        embed_dims: channels C of both streams (project them to C before the encoder).
        num_heads, ffn_dims, num_levels_a, num_levels_b, num_points, dropout, spreading,
        num_summary, key_pos_dims_a, key_pos_dims_b, cross_scale_init: passed to every
            :class:`DualStreamEncoderLayer` (``num_levels_* = 0`` marks a token stream).
        layer_cfg: overrides for the layers: one dict for all layers, or a list with one
            dict per layer. A ``type`` key builds that type from ``MODELS`` instead of
            :class:`DualStreamEncoderLayer`.

    Cost note: the correspondence's ``gather_*`` are called in every layer. The geometry
    is fixed across layers, but the sampled *values* must be re-read from the current
    features, and :class:`Correspondence` returns values and indices together, so a
    correspondence that wants to save the geometry work caches its own sampling
    locations (it is built per batch). The ray layout is pure geometry and is asked for
    once per forward.
    """

    def __init__(self, num_layers: int = 2, embed_dims: int = 128, num_heads: int = 8,
                 ffn_dims: int = 512, num_levels_a: int = 1, num_levels_b: int = 1,
                 num_points: int = 4, dropout: float = 0.0, spreading: Optional[str] = "auto",
                 num_summary: int = 16, key_pos_dims_a: Optional[int] = None,
                 key_pos_dims_b: Optional[int] = None, cross_scale_init: float = 0.1,
                 layer_cfg: Union[None, dict, Sequence[dict]] = None) -> None:
        super().__init__()
        common: dict[str, Any] = dict(
            embed_dims=embed_dims, num_heads=num_heads, ffn_dims=ffn_dims,
            num_levels_a=num_levels_a, num_levels_b=num_levels_b, num_points=num_points,
            dropout=dropout, spreading=spreading, num_summary=num_summary,
            key_pos_dims_a=key_pos_dims_a, key_pos_dims_b=key_pos_dims_b,
            cross_scale_init=cross_scale_init)
        if layer_cfg is None or isinstance(layer_cfg, dict):
            per_layer = [dict(layer_cfg or {}) for _ in range(num_layers)]
        else:
            per_layer = [dict(cfg) for cfg in layer_cfg]
            if len(per_layer) != num_layers:
                raise ValueError(f"layer_cfg lists {len(per_layer)} layers, "
                                 f"num_layers={num_layers}")
        self.embed_dims = embed_dims
        self.layers = nn.ModuleList(self._build_layer({**common, **cfg}) for cfg in per_layer)

    @staticmethod
    def _build_layer(cfg: dict) -> nn.Module:
        layer_type = cfg.pop("type", None)
        if layer_type is None or layer_type in ("DualStreamEncoderLayer", DualStreamEncoderLayer):
            return DualStreamEncoderLayer(**cfg)
        return MODELS.build(dict(type=layer_type, **cfg))

    def forward(self, a: StreamFeatures, b: StreamFeatures,
                correspondence: Correspondence) -> tuple[StreamFeatures, StreamFeatures]:
        """Run every layer.

        Args:
            a: stream A, maps (levels (B * V_a, C, H_l, W_l)) or tokens ((B, N_a, C) with
                padding_mask (B, N_a)); ``present`` (B,) marks samples that have it.
            b: stream B, likewise.
            correspondence: built for this batch; maps queries of A to B and back.

        Returns:
            (a_out, b_out): StreamFeatures with the same structure as ``a`` and ``b``
            (levels, views, padding, present, meta) and C channels. Samples lacking a
            stream pass that stream through unchanged and get no cross-modal update in
            the other; token padding positions are returned unchanged.
        """
        layout = None
        if any(getattr(layer, "uses_ray_layout", False) for layer in self.layers):
            layout = correspondence.ray_layout(a, b)  # geometry only: once per forward
        for layer in self.layers:
            a, b = layer(a, b, correspondence, ray_layout=layout)
        return a, b
