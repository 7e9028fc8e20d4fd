"""MGCA's projection head: backbone features -> the shared 128-d embedding space."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["ProjectionHead"]


@MODELS.register_module()
class ProjectionHead(nn.Module):
    """Linear -> BN -> ReLU -> Linear -> BN(affine=False) (MGCA; docs/methods/mgca.md).

    The final non-affine BN keeps every embedding dimension centred and at unit scale, so
    no dimension dominates the cosine similarities; the losses L2-normalise the outputs.

    Args:
        in_dims: backbone feature size.
        hidden_dims: hidden layer size (MGCA: 2048).
        out_dims: embedding size (MGCA: 128).
    """

    def __init__(self, in_dims: int, hidden_dims: int = 2048, out_dims: int = 128) -> None:
        super().__init__()
        self.in_dims, self.out_dims = in_dims, out_dims
        self.layers = nn.Sequential(
            nn.Linear(in_dims, hidden_dims), nn.BatchNorm1d(hidden_dims), nn.ReLU(inplace=True),
            nn.Linear(hidden_dims, out_dims), nn.BatchNorm1d(out_dims, affine=False))

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Project features.

        Args:
            x: (B, in_dims) global features, or (B, L, in_dims) local tokens.
            mask: for local tokens, (B, L) bool, True = padding. Padding rows are left out
                (so they do not bias the BatchNorm statistics) and come back as zeros.

        Returns:
            (B, out_dims) or (B, L, out_dims), not normalised.
        """
        if x.dim() == 2:
            return self.layers(x)
        leading = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        if mask is None:
            return self.layers(flat).reshape(*leading, self.out_dims)
        keep = ~mask.reshape(-1)
        out = flat.new_zeros(flat.shape[0], self.out_dims)
        out = out.index_put((keep.nonzero(as_tuple=True)[0],), self.layers(flat[keep]))
        return out.reshape(*leading, self.out_dims)
