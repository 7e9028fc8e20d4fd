"""DenseCorrespondence: all-to-all pairs that skip padding and absent samples."""
from __future__ import annotations

import pytest
import torch

from interlace.core.engine.registry import TASK_UTILS
from interlace.core.interaction.correspondence import Footprint
from interlace.core.interaction.dense_correspondence import DenseCorrespondence
from interlace.core.interaction.streams import StreamFeatures


def words(batch: int = 2, n: int = 6, lengths=(4, 5), present=None) -> StreamFeatures:
    tokens = torch.randn(batch, n, 4)
    pad = torch.arange(n).view(1, n) >= torch.tensor(lengths).view(batch, 1)
    return StreamFeatures(tokens=tokens, padding_mask=pad, present=present)


def test_every_query_pairs_with_every_non_padding_token():
    a = StreamFeatures(tokens=torch.randn(2, 5, 8))
    b = words()
    got = DenseCorrespondence().gather_b_for_a(a, b)
    assert got.num_pairs == 5 * 4 + 5 * 5
    assert got.key_position is None
    values, valid = got.to_dense()
    assert values.shape == (2, 5, 5, 4) and valid.shape == (2, 5, 5)
    assert valid[0].sum(-1).tolist() == [4] * 5 and valid[1].sum(-1).tolist() == [5] * 5
    # Keys keep token order and never include padding tokens.
    assert torch.equal(values[0, 3, :4], b.tokens[0, :4])
    assert torch.equal(values[1, 0], b.tokens[1, :5])
    pad_tokens = b.tokens[b.padding_mask]
    assert not (got.values.unsqueeze(1) == pad_tokens.unsqueeze(0)).all(-1).any()


def test_padding_queries_get_no_pairs_and_maps_work_as_keys():
    a = words()
    b = StreamFeatures(levels=[torch.randn(4, 3, 2, 3)], num_views=2)   # 12 positions/sample
    corr = DenseCorrespondence()
    got = corr.gather_b_for_a(a, b)
    assert got.keys_per_query().tolist() == [[12] * 4 + [0] * 2, [12] * 5 + [0]]
    back = corr.gather_a_for_b(a, b)
    assert back.num_queries_per_sample == 12
    assert back.keys_per_query().tolist() == [[4] * 12, [5] * 12]


def test_absent_samples_give_no_pairs():
    a = StreamFeatures(tokens=torch.randn(3, 5, 4), present=torch.tensor([True, True, False]))
    b = words(3, lengths=(4, 5, 6), present=torch.tensor([True, False, True]))
    corr = DenseCorrespondence()
    assert corr.gather_b_for_a(a, b).keys_per_query().sum(1).tolist() == [20, 0, 0]
    assert corr.gather_a_for_b(a, b).keys_per_query().sum(1).tolist() == [20, 0, 0]


def test_footprint_pairs_every_query_with_every_token():
    b = words()
    fp = Footprint(center=torch.rand(2, 3, 2), size=torch.rand(2, 3, 2), yaw=torch.zeros(2, 3))
    got = DenseCorrespondence().gather_footprint(fp, b)
    assert got.num_queries_per_sample == 3
    assert got.keys_per_query().tolist() == [[4] * 3, [5] * 3]


def test_too_many_pairs_raise_a_clear_error():
    a = StreamFeatures(tokens=torch.randn(1, 100, 2))
    b = StreamFeatures(tokens=torch.randn(1, 100, 2))
    with pytest.raises(ValueError, match="10,000 pairs.*max_pairs=9,999"):
        DenseCorrespondence(max_pairs=9_999).gather_b_for_a(a, b)
    assert DenseCorrespondence(max_pairs=10_000).gather_b_for_a(a, b).num_pairs == 10_000


def test_registered_for_configs():
    assert TASK_UTILS.get("DenseCorrespondence") is DenseCorrespondence
