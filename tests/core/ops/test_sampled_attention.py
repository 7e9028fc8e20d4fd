"""Multi-scale sampled attention: grid_sample path vs the explicit-interpolation reference,
hand-computed samples, and the MultiScaleSampledAttention module."""
import pytest
import torch

from interlace.core.engine.registry import MODELS
from interlace.core.ops.sampled_attention import (
    MultiScaleSampledAttention,
    multi_scale_sampled_attention,
    multi_scale_sampled_attention_reference,
)

SHAPES = torch.tensor([[5, 7], [3, 2]])  # two levels of different aspect ratio


def _random_inputs(batch=2, queries=6, heads=2, dims=3, points=3, dtype=torch.float64):
    levels = SHAPES.shape[0]
    keys = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    value = torch.randn(batch, keys, heads, dims, dtype=dtype)
    # [-0.3, 1.3]: about a third of the points sit partly or wholly outside the map.
    locations = torch.rand(batch, queries, heads, levels, points, 2, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(batch, queries, heads, levels, points, dtype=dtype)
    return value, locations, weights


def _one_point(value_map, x, y, weight=1.0):
    """value (1, H*W, 1, 1) from an (H, W) map, one query/head/level/point at (x, y)."""
    height, width = value_map.shape
    value = value_map.reshape(1, height * width, 1, 1).to(torch.float64)
    locations = torch.tensor([x, y], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    weights = torch.full((1, 1, 1, 1, 1), weight, dtype=torch.float64)
    return value, torch.tensor([[height, width]]), locations, weights


def test_sampled_attention_matches_reference_loop_with_outside_points():
    value, locations, weights = _random_inputs()
    outside = ((locations < 0) | (locations > 1)).any(-1)
    assert outside.any() and (~outside).any()
    ours = multi_scale_sampled_attention(value, SHAPES, locations, weights)
    ref = multi_scale_sampled_attention_reference(value, SHAPES, locations, weights)
    assert ours.shape == (2, 6, 2 * 3)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert ours.abs().max() > 0.1


def test_sampled_attention_reads_zero_far_outside_the_map():
    value, locations, weights = _random_inputs()
    locations = locations + 5.0  # every sample more than a whole map away
    out = multi_scale_sampled_attention(value, SHAPES, locations, weights)
    assert torch.count_nonzero(out) == 0


def test_sampled_attention_gradients_match_reference():
    value, locations, weights = _random_inputs()
    grads = []
    for fn in (multi_scale_sampled_attention, multi_scale_sampled_attention_reference):
        inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
        out = fn(inputs[0], SHAPES, inputs[1], inputs[2])
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([t.grad for t in inputs])
    for name, ours, ref in zip(("value", "sampling_locations", "attention_weights"), *grads):
        assert ours is not None and ours.abs().max() > 1e-3, f"no gradient reaches {name}"
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0, msg=f"gradient of {name}")


def test_sampled_attention_pixel_centre_returns_that_pixel():
    value_map = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # Centre of pixel (row 1, col 0) in the [0, 1] edge convention: ((0 + .5) / 2, (1 + .5) / 2).
    out = multi_scale_sampled_attention(*_one_point(value_map, 0.25, 0.75))
    assert out.item() == pytest.approx(3.0, abs=1e-12)


def test_sampled_attention_midpoint_of_four_pixels_is_their_mean_times_weight():
    value_map = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = multi_scale_sampled_attention(*_one_point(value_map, 0.5, 0.5, weight=0.5))
    assert out.item() == pytest.approx(0.5 * 2.5, abs=1e-12)


def test_sampled_attention_edge_sample_blends_with_zero_padding():
    value_map = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # x = 0 is the left edge: halfway between pixel column 0 and a zero column outside.
    out = multi_scale_sampled_attention(*_one_point(value_map, 0.0, 0.25))
    assert out.item() == pytest.approx(0.5, abs=1e-12)
    ref = multi_scale_sampled_attention_reference(*_one_point(value_map, 0.0, 0.25))
    assert ref.item() == pytest.approx(0.5, abs=1e-12)


def test_sampled_attention_rejects_mismatched_value_length():
    value, locations, weights = _random_inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        multi_scale_sampled_attention(value[:, :-1], SHAPES, locations, weights)


# ----------------------------------------------------------------------------- module


def _module_inputs(module, batch=2, queries=5):
    shapes = torch.tensor([[6, 4], [3, 2]])
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    query = torch.randn(batch, queries, module.embed_dims)
    value = torch.randn(batch, keys, module.embed_dims)
    reference = torch.rand(batch, queries, module.num_levels, 2)
    return query, value, reference, shapes


def test_module_is_registered_and_returns_query_shape():
    module = MODELS.build(dict(type="MultiScaleSampledAttention", embed_dims=16, num_heads=4,
                               num_levels=2, num_points=3))
    assert isinstance(module, MultiScaleSampledAttention)
    query, value, reference, shapes = _module_inputs(module)
    out = module(query, value, reference, shapes)
    assert out.shape == query.shape
    # A shared (B, Q, 2) reference point is the same as repeating it for each level.
    shared = reference[:, :, 0]
    torch.testing.assert_close(module(query, value, shared, shapes),
                               module(query, value, shared[:, :, None].expand_as(reference), shapes))


def test_module_initial_offsets_form_a_ring_of_directions():
    module = MultiScaleSampledAttention(embed_dims=16, num_heads=4, num_levels=2, num_points=3)
    offsets = module.sampling_offsets.bias.view(4, 2, 3, 2)
    # Head 0 looks right (+x), head 1 down (+y), head 2 left, head 3 up; point p at p + 1.
    expected_dirs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for point in range(3):
        torch.testing.assert_close(offsets[:, 1, point], expected_dirs * (point + 1), atol=1e-6, rtol=0)


def test_module_padding_mask_removes_masked_values():
    torch.manual_seed(1)
    module = MultiScaleSampledAttention(embed_dims=16, num_heads=4, num_levels=2, num_points=3)
    with torch.no_grad():  # non-zero biases so that masked zeros differ from projected zeros
        module.value_proj.bias.normal_()
    query, value, reference, shapes = _module_inputs(module)
    level0 = int(shapes[0, 0] * shapes[0, 1])
    mask = torch.zeros(value.shape[:2], dtype=torch.bool)
    mask[:, :level0] = True  # only level 1 remains visible

    masked = module(query, value, reference, shapes, key_padding_mask=mask)
    assert not torch.allclose(masked, module(query, value, reference, shapes), atol=1e-4)
    # Whatever sits in the masked level no longer matters ...
    scrambled = value.clone()
    scrambled[:, :level0] = torch.randn_like(scrambled[:, :level0]) * 10
    torch.testing.assert_close(module(query, scrambled, reference, shapes, key_padding_mask=mask), masked)
    # ... while the visible level still does.
    moved = value.clone()
    moved[:, level0:] += 1.0
    assert not torch.allclose(module(query, moved, reference, shapes, key_padding_mask=mask), masked,
                              atol=1e-4)
    # Masking everything leaves only the residual plus the output projection's bias.
    everything = torch.ones_like(mask)
    out = module(query, value, reference, shapes, key_padding_mask=everything)
    torch.testing.assert_close(out, query + module.output_proj.bias)


def test_module_gradients_reach_query_value_and_parameters():
    module = MultiScaleSampledAttention(embed_dims=16, num_heads=4, num_levels=2, num_points=3)
    with torch.no_grad():  # the initial zero weights would make offsets and weights query-blind
        module.sampling_offsets.weight.normal_(std=0.1)
        module.attention_weights.weight.normal_(std=0.1)
    query, value, reference, shapes = _module_inputs(module)
    query.requires_grad_(True)
    value.requires_grad_(True)
    identity = torch.zeros_like(query)  # no residual path: query's gradient must come via attention
    module(query, value, reference, shapes, identity=identity).square().sum().backward()
    assert query.grad is not None and query.grad.abs().max() > 0
    assert value.grad is not None and value.grad.abs().max() > 0
    for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
        assert getattr(module, name).weight.grad.abs().max() > 0, name


def test_module_sequence_first_layout_matches_batch_first():
    first = MultiScaleSampledAttention(embed_dims=16, num_heads=4, num_levels=2, num_points=3)
    seq = MultiScaleSampledAttention(embed_dims=16, num_heads=4, num_levels=2, num_points=3,
                                     batch_first=False)
    seq.load_state_dict(first.state_dict())
    query, value, reference, shapes = _module_inputs(first)
    out = seq(query.transpose(0, 1), value.transpose(0, 1), reference, shapes)
    torch.testing.assert_close(out.transpose(0, 1), first(query, value, reference, shapes))
