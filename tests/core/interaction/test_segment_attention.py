"""segment_attention (attention over per-query pair lists) against a dense masked softmax,
empty segments, and the SampledCrossAttention module built on it."""
import pytest
import torch

from interlace.core.interaction.segment_attention import (SampledCrossAttention,
                                                          keep_samples, segment_attention,
                                                          segment_attention_dense)
from interlace.core.interaction.streams import Gathered


def _inputs(num_queries=7, num_pairs=25, heads=2, dims=3, value_dims=4, used=5,
            dtype=torch.float64):
    # Segments only in [0, used): queries used..M-1 have no pairs; pairs are unsorted.
    segment = torch.randint(0, used, (num_pairs,))
    segment[:used] = torch.arange(used)  # every used query has at least one pair
    segment = segment[torch.randperm(num_pairs)]
    query = torch.randn(num_queries, heads, dims, dtype=dtype, requires_grad=True)
    key = torch.randn(num_pairs, heads, dims, dtype=dtype, requires_grad=True)
    value = torch.randn(num_pairs, heads, value_dims, dtype=dtype, requires_grad=True)
    return query, key, value, segment


def test_segment_attention_matches_dense_masked_attention_values_and_grads():
    query, key, value, segment = _inputs()
    weight = torch.randn(query.shape[0], query.shape[1], value.shape[-1], dtype=torch.float64)
    ours = segment_attention(query, key, value, segment)
    ref = segment_attention_dense(query, key, value, segment)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    grads = torch.autograd.grad((ours * weight).sum(), (query, key, value))
    ref_grads = torch.autograd.grad((ref * weight).sum(), (query, key, value))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_segment_attention_is_stable_for_large_logits():
    query, key, value, segment = _inputs()
    with torch.no_grad():
        query.mul_(300.0)  # logits in the thousands: a naive exp overflows
    ours = segment_attention(query, key, value, segment)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, segment_attention_dense(query, key, value, segment),
                               atol=1e-6, rtol=0)


def test_empty_segments_give_zeros_and_finite_grads():
    query, key, value, segment = _inputs(num_queries=7, used=4)
    out = segment_attention(query, key, value, segment)
    assert torch.equal(out[4:], torch.zeros_like(out[4:]))
    assert (out[:4].abs().sum(-1) > 0).all()
    out.pow(2).sum().backward()
    for tensor in (query, key, value):
        assert torch.isfinite(tensor.grad).all()
    assert torch.equal(query.grad[4:], torch.zeros_like(query.grad[4:]))


def test_no_pairs_at_all_gives_zeros():
    query = torch.randn(3, 2, 4, requires_grad=True)
    empty = torch.zeros(0, 2, 4, requires_grad=True)
    out = segment_attention(query, empty, empty, torch.zeros(0, dtype=torch.long))
    assert out.shape == (3, 2, 4) and torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.isfinite(query.grad).all()


def _gathered(batch=2, queries=5, channels=8, pos_dims=None):
    # Query 3 of sample 0 and query 0 of sample 1 get no pairs.
    query_index = torch.tensor([0, 0, 1, 2, 2, 2, 4, 6, 7, 7, 9])
    values = torch.randn(query_index.numel(), channels, dtype=torch.float64)
    position = None if pos_dims is None else torch.rand(query_index.numel(), pos_dims,
                                                       dtype=torch.float64)
    return Gathered(values=values, query_index=query_index, num_queries_per_sample=queries,
                    batch_size=batch, key_position=position)


def test_sampled_cross_attention_zero_without_pairs_and_pair_order_free():
    module = SampledCrossAttention(embed_dims=8, num_heads=2, key_pos_dims=3).double()
    query = torch.randn(2, 5, 8, dtype=torch.float64)
    gathered = _gathered(pos_dims=3)
    out = module(query, gathered)
    assert out.shape == (2, 5, 8)
    assert torch.equal(out[0, 3], torch.zeros(8, dtype=torch.float64))
    assert torch.equal(out[1, 0], torch.zeros(8, dtype=torch.float64))
    assert (out[0, [0, 1, 2, 4]].abs().sum(-1) > 0).all()
    # Pairs are a set per query: their order must not matter.
    perm = torch.randperm(gathered.num_pairs)
    shuffled = Gathered(gathered.values[perm], gathered.query_index[perm], 5, 2,
                        gathered.key_position[perm])
    torch.testing.assert_close(module(query, shuffled), out)


def test_sampled_cross_attention_needs_positions_when_configured():
    module = SampledCrossAttention(embed_dims=8, num_heads=2, key_pos_dims=3)
    with pytest.raises(ValueError, match="key_position"):
        module(torch.randn(2, 5, 8), Gathered(torch.randn(3, 8), torch.tensor([0, 1, 2]), 5, 2))


def test_keep_samples_drops_whole_samples():
    gathered = _gathered()
    kept = keep_samples(gathered, torch.tensor([True, False]))
    assert torch.equal(kept.query_index, torch.tensor([0, 0, 1, 2, 2, 2, 4]))
    assert kept.values.shape == (7, 8)
