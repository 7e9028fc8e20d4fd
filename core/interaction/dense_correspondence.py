"""Correspondence without geometry (e.g. image patches <-> report words): every query of
one stream pairs with every usable position of the other, and attention learns the
matching.

"Usable": not padding (``padding_mask``) and in a sample where both streams are present.
Padding queries get no pairs either (their outputs are passed through unchanged), and a
sample lacking either stream gives no pairs in either direction.

Memory: one pair per (query, key), P = N_a x N_b per sample, each carrying a C-vector.
This is meant for token-sized streams (hundreds of tokens); a map of 180 x 180 against
six camera views would need billions of pairs. A batch above ``max_pairs`` raises a
clear error instead of exhausting memory.
"""
from __future__ import annotations

import torch
from torch import Tensor

from interlace.core.engine.registry import TASK_UTILS

from .correspondence import Correspondence, Footprint
from .correspondence_utils import assemble_gathered
from .streams import Gathered, StreamFeatures

__all__ = ["DenseCorrespondence"]


@TASK_UTILS.register_module()
class DenseCorrespondence(Correspondence):
    """All-to-all pairs between two streams (tokens or maps).

    Args:
        max_pairs: largest number of pairs one call may build (over the whole batch);
            above it a ``ValueError`` explains the cost and how to raise the limit.
    """

    def __init__(self, max_pairs: int = 50_000_000) -> None:
        self.max_pairs = int(max_pairs)

    @staticmethod
    def _usable(stream: StreamFeatures) -> Tensor:
        """(B, N) bool: non-padding positions of present samples."""
        bsz, n = stream.batch_size, stream.num_queries
        usable = stream.present_mask().view(bsz, 1).expand(bsz, n)
        pad = stream.query_key_padding()
        if pad is not None:
            usable = usable & ~pad.to(device=usable.device, dtype=torch.bool)
        return usable

    def _pairs(self, query_ok: Tensor, key: StreamFeatures, what: str) -> Gathered:
        """Every usable query (query_ok (B, N_q)) with every usable key position.

        Returns:
            :class:`Gathered`, values (P, C_key), pairs ordered by query then key, no
            key positions.
        """
        key_ok = self._usable(key).to(query_ok.device)
        if key_ok.shape[0] != query_ok.shape[0]:
            raise ValueError(f"streams disagree on the batch size: {query_ok.shape[0]} vs "
                             f"{key_ok.shape[0]}")
        per_sample = query_ok.sum(1) * key_ok.sum(1)
        total = int(per_sample.sum())
        if total > self.max_pairs:
            raise ValueError(
                f"DenseCorrespondence.{what} would build {total:,} pairs "
                f"({query_ok.shape[1]} queries x {key_ok.shape[1]} keys per sample, batch "
                f"{query_ok.shape[0]}), above max_pairs={self.max_pairs:,}. Dense pairing is "
                "meant for token-sized streams; pool the maps first or raise max_pairs.")
        keys = key.flatten()                                                  # (B, N_k, C)
        n_q = query_ok.shape[1]
        values, index = [], []
        for s in range(query_ok.shape[0]):
            qi = query_ok[s].nonzero(as_tuple=True)[0]
            ki = key_ok[s].nonzero(as_tuple=True)[0]
            if qi.numel() == 0 or ki.numel() == 0:
                continue
            index.append(s * n_q + qi.repeat_interleave(ki.numel()))
            values.append(keys[s, ki].repeat(qi.numel(), 1))
        return assemble_gathered(values, index, None, channels=key.channels, num_queries=n_q,
                                 batch_size=query_ok.shape[0], like=keys)

    def gather_b_for_a(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """Every usable A query with every usable B position.

        Returns:
            :class:`Gathered`, values (P, C_b), P = sum over samples of N_a' x N_b'
            (usable counts), key_position None.
        """
        return self._pairs(self._usable(a) & b.present_mask().to(a.device).view(-1, 1), b,
                           "gather_b_for_a")

    def gather_a_for_b(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """Every usable B query with every usable A position (values (P, C_a))."""
        return self._pairs(self._usable(b) & a.present_mask().to(b.device).view(-1, 1), a,
                           "gather_a_for_b")

    def gather_footprint(self, footprint: Footprint, b: StreamFeatures,
                         grid_size: int = 7) -> Gathered:
        """No geometry: every footprint query pairs with every usable B position
        (``grid_size`` is ignored). Values (P, C_b), P = Q x N_b' per sample."""
        ok = torch.ones(footprint.batch_size, footprint.num_queries, dtype=torch.bool,
                        device=b.device)
        return self._pairs(ok, b, "gather_footprint")
