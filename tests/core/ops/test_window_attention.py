"""Local window attention: chunked neighbourhood gather vs dense masked attention, border
masking, global-window equivalence and the LocalWindowAttention module."""
import math

import pytest
import torch

from interlace.core.engine.registry import MODELS
from interlace.core.ops.window_attention import (
    LocalWindowAttention,
    local_window_attention,
    local_window_attention_dense,
)


def _qkv(batch=2, heads=3, height=7, width=9, dims=4, dtype=torch.float64):
    return tuple(torch.randn(batch, heads, height, width, dims, dtype=dtype) for _ in range(3))


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "padding_mask"])
def test_window_attention_matches_dense_masked_reference(kernel_size, dilation, masked):
    query, key, value = _qkv()
    mask = torch.rand(2, 7, 9) < 0.3 if masked else None
    # chunk_size=2 splits the 7 rows unevenly, exercising the last partial chunk.
    ours = local_window_attention(query, key, value, kernel_size, dilation, mask, chunk_size=2)
    ref = local_window_attention_dense(query, key, value, kernel_size, dilation, mask, chunk_size=11)
    assert ours.shape == query.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_window_attention_result_does_not_depend_on_chunk_size():
    query, key, value = _qkv()
    full = local_window_attention(query, key, value, 5, chunk_size=7)
    for chunk in (1, 3, None):
        torch.testing.assert_close(local_window_attention(query, key, value, 5, chunk_size=chunk), full)


def test_window_attention_corner_attends_only_to_in_map_neighbours():
    _, key, value = _qkv(batch=1, heads=1, height=5, width=6)
    query = torch.zeros_like(key)  # zero logits: uniform weights over the allowed keys
    out = local_window_attention(query, key, value, kernel_size=3)
    # Top-left corner: the 2x2 block of in-map neighbours, not 4 values diluted over 9 slots.
    torch.testing.assert_close(out[0, 0, 0, 0], value[0, 0, :2, :2].mean(dim=(0, 1)))
    # Bottom edge, interior column: 2 rows x 3 columns.
    torch.testing.assert_close(out[0, 0, 4, 2], value[0, 0, 3:5, 1:4].mean(dim=(0, 1)))
    # Interior: the full 3x3 window.
    torch.testing.assert_close(out[0, 0, 2, 3], value[0, 0, 1:4, 2:5].mean(dim=(0, 1)))


def test_window_attention_dilated_window_skips_intermediate_positions():
    _, key, value = _qkv(batch=1, heads=1, height=7, width=7)
    query = torch.zeros_like(key)
    out = local_window_attention(query, key, value, kernel_size=3, dilation=2)
    torch.testing.assert_close(out[0, 0, 3, 3], value[0, 0, 1:6:2, 1:6:2].mean(dim=(0, 1)))
    torch.testing.assert_close(out[0, 0, 0, 0], value[0, 0, 0:3:2, 0:3:2].mean(dim=(0, 1)))


def test_window_attention_padding_mask_hides_keys_and_empty_windows_give_zero():
    _, key, value = _qkv(batch=1, heads=2, height=6, width=6)
    query = torch.zeros_like(key)
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, :3] = True  # hide the top half
    out = local_window_attention(query, key, value, kernel_size=3, key_padding_mask=mask)
    # Row 3 only sees rows 3-4 now that row 2 is hidden.
    torch.testing.assert_close(out[0, :, 3, 2], value[0, :, 3:5, 1:4].mean(dim=(1, 2)))
    # Rows 0-1 have every neighbour hidden: zeros, not NaN.
    assert torch.count_nonzero(out[0, :, :2]) == 0
    assert torch.isfinite(out).all()


def test_window_attention_whole_map_kernel_equals_global_attention():
    query, key, value = _qkv(height=4, width=5)
    out = local_window_attention(query, key, value, kernel_size=9)  # reach 4 >= every distance
    q, k, v = (t.flatten(2, 3) for t in (query, key, value))
    expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v
    torch.testing.assert_close(out, expected.view_as(out), atol=1e-10, rtol=0)


def test_window_attention_gradients_match_dense_reference():
    inputs = _qkv(batch=1, heads=2, height=5, width=6)
    mask = torch.zeros(1, 5, 6, dtype=torch.bool)
    mask[0, 0, :] = True
    grads = []
    for fn in (local_window_attention, local_window_attention_dense):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        out = fn(*leaves, 3, 1, mask)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([t.grad for t in leaves])
    for ours, ref in zip(*grads):
        assert torch.isfinite(ours).all() and ours.abs().max() > 1e-3
        torch.testing.assert_close(ours, ref, atol=1e-8, rtol=0)


def test_window_attention_rejects_even_kernel():
    query, key, value = _qkv()
    with pytest.raises(ValueError, match="odd"):
        local_window_attention(query, key, value, 4)


def test_window_module_is_registered_and_keeps_shape_and_gradients():
    module = MODELS.build(dict(type="LocalWindowAttention", embed_dims=12, num_heads=3, kernel_size=5))
    assert isinstance(module, LocalWindowAttention)
    x = torch.randn(2, 12, 7, 9, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    assert module.qkv.weight.grad.abs().max() > 0 and module.proj.weight.grad.abs().max() > 0


def test_window_module_is_local_and_respects_padding_mask():
    module = LocalWindowAttention(embed_dims=8, num_heads=2, kernel_size=3)
    x = torch.randn(1, 8, 6, 6)
    far = x.clone()
    far[:, :, 5, 5] += 5.0  # outside the 3x3 window of (0, 0)
    assert torch.allclose(module(x)[..., 0, 0], module(far)[..., 0, 0])
    near = x.clone()
    near[:, :, 1, 1] += 5.0  # inside it
    assert not torch.allclose(module(x)[..., 0, 0], module(near)[..., 0, 0])
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, 1, 1] = True  # hiding (1, 1) as a key leaves only its query effect elsewhere
    torch.testing.assert_close(module(near, mask)[..., 0, 0], module(x, mask)[..., 0, 0])
