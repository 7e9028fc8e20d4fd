"""FeaturePyramidNetwork: mmdet FPN behaviour (sizes, extra levels, top-down sums)."""
import pytest
import torch
from torch import nn

from interlace.core.engine.registry import MODELS
from interlace.core.necks import FeaturePyramidNetwork


def _pyramid(height=15, width=23, channels=(8, 16, 32, 64), batch=2):
    maps, h, w = [], height, width
    for c in channels:
        maps.append(torch.randn(batch, c, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return maps


def test_outputs_keep_input_sizes_and_extra_levels_halve_with_rounding_up():
    fpn = FeaturePyramidNetwork([8, 16, 32, 64], out_channels=12, num_outs=6)
    outs = fpn(_pyramid())
    assert [tuple(o.shape) for o in outs] == [
        (2, 12, 15, 23), (2, 12, 8, 12), (2, 12, 4, 6), (2, 12, 2, 3), (2, 12, 1, 2), (2, 12, 1, 1)]
    assert fpn.output_strides([4, 8, 16, 32]) == [4, 8, 16, 32, 64, 128]


@pytest.mark.parametrize("source", ["on_input", "on_lateral", "on_output"])
def test_extra_convs_make_strided_levels(source):
    fpn = FeaturePyramidNetwork([8, 16, 32, 64], 12, num_outs=5, start_level=1,
                                add_extra_convs=source, relu_before_extra_convs=True)
    outs = fpn(_pyramid())
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    in_channels = fpn.extra_convs[0].in_channels
    assert in_channels == (64 if source == "on_input" else 12)
    assert fpn.output_strides([4, 8, 16, 32]) == [8, 16, 32, 64, 128]


def test_top_down_adds_nearest_upsampled_coarser_lateral():
    fpn = FeaturePyramidNetwork([1, 1], out_channels=1, num_outs=2)
    with torch.no_grad():
        for conv in fpn.lateral_convs:
            conv.weight.fill_(1.0)
        for conv in fpn.output_convs.values():  # 3x3 identity kernel
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
    fine = torch.ones(1, 1, 4, 4)
    coarse = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out_fine, out_coarse = fpn([fine, coarse])
    expected = 1.0 + torch.tensor([[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    assert torch.equal(out_fine[0, 0], expected)
    assert torch.equal(out_coarse, coarse)


def test_out_indices_builds_only_the_output_convs_it_returns():
    fpn = FeaturePyramidNetwork([8, 16, 32, 64], 12, num_outs=4, out_indices=[0, 1])
    outs = fpn(_pyramid())
    assert [tuple(o.shape[-2:]) for o in outs] == [(15, 23), (8, 12)]
    assert sorted(fpn.output_convs) == ["0", "1"]
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in fpn.parameters()), "no unused parameters (DDP)"
    full = FeaturePyramidNetwork([8, 16, 32, 64], 12, num_outs=4)
    full.load_state_dict(fpn.state_dict(), strict=False)
    maps = _pyramid()
    assert torch.allclose(full(maps)[1], fpn(maps)[1])


def test_pooled_extra_level_computes_last_output_even_if_not_returned():
    fpn = FeaturePyramidNetwork([8, 16], 4, num_outs=3, out_indices=[2])
    (extra,) = fpn(_pyramid(channels=(8, 16)))
    assert tuple(extra.shape) == (2, 4, 4, 6)


def test_end_level_and_bad_arguments_are_rejected_clearly():
    fpn = FeaturePyramidNetwork([8, 16, 32, 64], 12, num_outs=2, start_level=1, end_level=2)
    assert [tuple(o.shape[-2:]) for o in fpn(_pyramid())] == [(8, 12), (4, 6)]
    with pytest.raises(ValueError, match="num_outs must be 2"):
        FeaturePyramidNetwork([8, 16, 32, 64], 12, num_outs=3, start_level=1, end_level=2)
    with pytest.raises(ValueError, match="add_extra_convs"):
        FeaturePyramidNetwork([8, 16], 12, num_outs=3, add_extra_convs="on_top")
    with pytest.raises(ValueError, match="expected 2 input maps"):
        FeaturePyramidNetwork([8, 16], 12, num_outs=2)(_pyramid())


def test_built_from_config_by_name():
    fpn = MODELS.build(dict(type="FeaturePyramidNetwork", in_channels=[8, 16], out_channels=4,
                            num_outs=2))
    assert isinstance(fpn, FeaturePyramidNetwork) and isinstance(fpn.lateral_convs[0], nn.Conv2d)
