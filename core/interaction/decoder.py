"""The predictive interaction decoder (DeepInteraction / DeepInteraction++), generic over
domains.

Queries start at class-heatmap peaks of stream A's map (:class:`HeatmapQueryInitializer`)
and are refined by a stack of layers that alternate between the streams
(``layer_streams``):

- ``'a'``: RoI sampling on A's map (its first level) inside the query's footprint,
  enlarged ``enlarge_a`` times (DeepInteraction: the box enlarged 2x on the BEV);
- ``'b'``: stream B's features inside the same footprint, through the correspondence's
  ``gather_footprint`` (camera views for driving, the co-registered raster for remote
  sensing). Queries no view sees keep their features and previous predictions
  (``seen`` False), as do all queries of a sample whose B stream is absent.

After every layer its own heads (the caller's ``heads`` plus a ``'heatmap'`` class head)
predict from the queries. A ``'center'`` head of size 2 is special: its output is an
offset in normalised map units added to the query position (iterative refinement). The
next layer's footprint comes from these predictions through ``footprint_fn``.

Refinement and gradients (Deformable DETR; DINO's look-forward-twice): with
``delta_l`` the centre head output of layer l and ``p_l`` the running position,

    p_l          = p_{l-1}.detach() + delta_l        (state carried to layer l + 1)
    position_l   = p_{l-1}.detach() + delta_l        (returned; default)
    position_l   = p_{l-1} + delta_l                 (returned; look_forward_twice)

so with look-forward-twice the loss of layer l also trains layer l-1's centre head.
Layers read positions and predictions detached: geometry is learned through the losses on
the predictions, not through sampling locations.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .correspondence import Correspondence, Footprint
from .decoder_layer import PredictiveInteractionDecoderLayer
from .footprint_sampling import sample_footprint_on_map, scale_footprint, square_footprint
from .query_init import HEATMAP_PRIOR_BIAS, HeatmapQueryInitializer
from .streams import Gathered, StreamFeatures

__all__ = ["PredictiveInteractionDecoder", "DecoderOutput"]

FootprintFn = Callable[[dict, Tensor], Footprint]
_RESERVED = ("heatmap", "position", "seen")


@dataclass
class DecoderOutput:
    """What the decoder returns.

    Attributes:
        layers: one dict per layer: ``{head name: (B, Q, size), 'heatmap': (B, Q, K) class
            logits, 'position': (B, Q, 2) normalised query position, 'seen': (B, Q) bool}``.
        class_ids: (B, Q) class of the heatmap peak each query started from.
        scores: (B, Q) heatmap score of that peak.
        init_positions: (B, Q, 2) the peaks' cell centres.
        heatmap: (B, K, H, W) heatmap logits used for the selection (for its dense loss).
    """

    layers: list[dict] = field(default_factory=list)
    class_ids: Optional[Tensor] = None
    scores: Optional[Tensor] = None
    init_positions: Optional[Tensor] = None
    heatmap: Optional[Tensor] = None

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index: int) -> dict:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)


def _mlp(in_dims: int, hidden: int, out_dims: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dims, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dims))


def _resolve_fn(fn: Union[None, str, FootprintFn]) -> Optional[FootprintFn]:
    # A dotted path lets plain-text (JSON / --cfg-options) configs name the function.
    if fn is None or callable(fn):
        return fn
    if isinstance(fn, str) and "." in fn:
        module, _, name = fn.rpartition(".")
        return getattr(importlib.import_module(module), name)
    raise TypeError(f"footprint_fn must be a callable, a dotted import path or None, got {fn!r}")


@MODELS.register_module()
class PredictiveInteractionDecoder(nn.Module):
    """Heatmap-initialised queries refined by layers alternating between two streams.

    Args:
        num_classes: K, heatmap classes.
        heads: {name: output size} predicted after every layer, e.g.
            ``dict(center=2, height=1, dim=3, rot=2, vel=2)``; 'center' (size 2) drives the
            position refinement. 'heatmap', 'position' and 'seen' are reserved.
        embed_dims: C, query width.
        num_queries: Q.
        layer_streams: stream per layer, 'a' or 'b'; the first must be 'a' (the first
            predictions need a map every query lies on).
        grid_size: G, footprint samples per side (S = G * G).
        enlarge_a: footprint scale for 'a' layers; enlarge_b: for 'b' layers.
        look_forward_twice: see the module docstring.
        footprint_fn: ``fn(predictions, positions) -> Footprint`` from the previous
            layer's (detached) head outputs and the current (detached) positions (B, Q, 2);
            a callable or a dotted import path. Default: a square of
            ``default_footprint_size`` around the position. The first layer always uses
            that square (no predictions exist yet).
        default_footprint_size: side of the default square, normalised units of A's map.
        in_channels: channels of A's map (a 1x1 conv projects it to C when different).
        b_channels: channels of B's features (a linear layer projects the gathered values
            to C when different).
        num_heads, ffn_dims, dropout, update, dynamic_dims: of every decoder layer
            (:class:`PredictiveInteractionDecoderLayer`).
        head_hidden: hidden width of the head MLPs (default C).
        nms_kernel_size, class_kernel_sizes, heatmap_head: of the
            :class:`HeatmapQueryInitializer` (``heatmap_head=False`` requires the caller
            to pass the heatmap).
    """

    def __init__(self, num_classes: int, heads: dict[str, int], embed_dims: int = 128,
                 num_queries: int = 200, layer_streams: Sequence[str] = ("a", "b", "a", "b", "a"),
                 grid_size: int = 7, enlarge_a: float = 2.0, enlarge_b: float = 1.0,
                 look_forward_twice: bool = False,
                 footprint_fn: Union[None, str, FootprintFn] = None,
                 default_footprint_size: float = 0.05, in_channels: Optional[int] = None,
                 b_channels: Optional[int] = None, num_heads: int = 8, ffn_dims: int = 512,
                 dropout: float = 0.0, update: str = "dynamic_conv", dynamic_dims: int = 64,
                 head_hidden: Optional[int] = None, nms_kernel_size: int = 3,
                 class_kernel_sizes: Optional[dict[int, int]] = None,
                 heatmap_head: bool = True) -> None:
        super().__init__()
        self.layer_streams = tuple(str(s) for s in layer_streams)
        if not self.layer_streams or self.layer_streams[0] != "a":
            raise ValueError(f"layer_streams must start with 'a', got {self.layer_streams}")
        if any(s not in ("a", "b") for s in self.layer_streams):
            raise ValueError(f"layer_streams may hold only 'a' and 'b', got {self.layer_streams}")
        heads = {str(k): int(v) for k, v in heads.items()}
        clash = [k for k in heads if k in _RESERVED]
        if clash:
            raise ValueError(f"head names {clash} are reserved for the decoder's outputs")
        if "center" in heads and heads["center"] != 2:
            raise ValueError(f"the 'center' head must have size 2, got {heads['center']}")
        self.num_classes, self.head_sizes = int(num_classes), heads
        self.embed_dims, self.num_queries = int(embed_dims), int(num_queries)
        self.grid_size = int(grid_size)
        self.enlarge_a, self.enlarge_b = float(enlarge_a), float(enlarge_b)
        self.look_forward_twice = bool(look_forward_twice)
        self.footprint_fn = _resolve_fn(footprint_fn)
        self.default_footprint_size = float(default_footprint_size)

        c = self.embed_dims
        self.input_proj = (nn.Conv2d(in_channels, c, 1) if in_channels not in (None, c)
                           else nn.Identity())
        self.b_proj = nn.Linear(b_channels, c) if b_channels not in (None, c) else nn.Identity()
        self.query_init = HeatmapQueryInitializer(
            num_classes, num_queries, c, nms_kernel_size=nms_kernel_size,
            class_kernel_sizes=class_kernel_sizes, heatmap_head=heatmap_head)
        self.layers = nn.ModuleList(
            PredictiveInteractionDecoderLayer(c, num_heads, ffn_dims, dropout, self.grid_size,
                                              update, dynamic_dims)
            for _ in self.layer_streams)
        hidden = int(head_hidden or c)
        self.heads = nn.ModuleList()
        for _ in self.layer_streams:
            layer_heads = nn.ModuleDict({name: _mlp(c, hidden, size) for name, size in heads.items()})
            layer_heads["heatmap"] = _mlp(c, hidden, self.num_classes)
            nn.init.constant_(layer_heads["heatmap"][-1].bias, HEATMAP_PRIOR_BIAS)
            if "center" in layer_heads:
                # Start as "no move" (Deformable DETR's box refinement init): the first
                # steps then cannot throw queries off the map.
                nn.init.zeros_(layer_heads["center"][-1].weight)
                nn.init.zeros_(layer_heads["center"][-1].bias)
            self.heads.append(layer_heads)

    # --- helpers ----------------------------------------------------------------------
    def _footprint(self, predictions: Optional[dict], positions: Tensor) -> Footprint:
        if predictions is None or self.footprint_fn is None:
            return square_footprint(positions, self.default_footprint_size)
        detached = {k: v.detach() for k, v in predictions.items() if isinstance(v, Tensor)}
        return self.footprint_fn(detached, positions)

    def _gather_b(self, footprint: Footprint, b: Optional[StreamFeatures],
                  correspondence: Optional[Correspondence]) -> Optional[Gathered]:
        """Stream B's pairs for the footprints, absent samples' pairs removed."""
        if b is None or correspondence is None:
            return None
        present = b.present_mask()
        if not bool(present.any()):
            return None
        gathered = correspondence.gather_footprint(footprint, b, self.grid_size)
        q = footprint.num_queries
        if gathered.num_queries_per_sample != q or gathered.batch_size != footprint.batch_size:
            raise ValueError(f"gather_footprint returned pairs for {gathered.batch_size} x "
                             f"{gathered.num_queries_per_sample} queries, expected "
                             f"{footprint.batch_size} x {q}")
        values, index = gathered.values, gathered.query_index
        if not bool(present.all()):
            keep = present[torch.div(index, q, rounding_mode="floor")]
            values, index = values[keep], index[keep]
        values = self.b_proj(values)
        if values.shape[-1] != self.embed_dims:
            raise ValueError(f"stream B's gathered features have {values.shape[-1]} channels, "
                             f"the decoder works in {self.embed_dims}: set b_channels")
        return Gathered(values=values, query_index=index, num_queries_per_sample=q,
                        batch_size=gathered.batch_size)

    # --- forward ----------------------------------------------------------------------
    def forward(self, a: StreamFeatures, b: Optional[StreamFeatures] = None,
                correspondence: Optional[Correspondence] = None,
                heatmap: Optional[Tensor] = None) -> DecoderOutput:
        """Run the decoder.

        Args:
            a: stream A, maps; its first level (B, C_a, H, W) with one view per sample is
                the map queries live on.
            b: stream B (any form the correspondence understands), or None.
            correspondence: maps footprints on A's map to B's features; None skips 'b'
                layers like an absent B.
            heatmap: (B, K, H, W) class logits for query selection; built by the decoder's
                own heatmap head when None.

        Returns:
            :class:`DecoderOutput`; ``output.layers[l]`` holds layer l's predictions
            (shapes in :class:`DecoderOutput`).
        """
        if not a.is_map or a.num_views != 1:
            raise ValueError("stream A must be a single-view map stream for the decoder")
        a_map = self.input_proj(a.levels[0])
        init = self.query_init(a_map, heatmap)
        query = init.features
        state = init.positions  # running position p_{l-1}, may carry grad to delta_{l-1}
        previous: Optional[dict] = None
        outputs = DecoderOutput(class_ids=init.class_ids, scores=init.scores,
                                init_positions=init.positions, heatmap=init.heatmap)

        for layer, layer_heads, stream in zip(self.layers, self.heads, self.layer_streams):
            position_in = state.detach()
            footprint = self._footprint(previous, position_in)
            if stream == "a":
                roi = sample_footprint_on_map(a_map, footprint, self.grid_size, self.enlarge_a)
                query, seen = layer(query, position_in, roi)
            else:
                gathered = self._gather_b(scale_footprint(footprint, self.enlarge_b), b,
                                          correspondence)
                if gathered is None:
                    seen = torch.zeros(query.shape[:2], dtype=torch.bool, device=query.device)
                else:
                    query, seen = layer(query, position_in, gathered)

            predictions = {name: head(query) for name, head in layer_heads.items()}
            base = state if self.look_forward_twice else position_in
            if "center" in predictions:
                delta = predictions["center"].to(state.dtype)
                position = base + delta
                new_state = position_in + delta
            else:
                position, new_state = base, position_in
            predictions["position"] = position

            if previous is not None and not bool(seen.all()):
                # Unseen queries: previous layer's outputs, exactly (features unchanged).
                keep = seen.unsqueeze(-1)
                predictions = {k: torch.where(keep, v, previous[k]) for k, v in predictions.items()}
                new_state = torch.where(keep, new_state, state)
            predictions["seen"] = seen
            outputs.layers.append(predictions)
            previous, state = predictions, new_state
        return outputs
