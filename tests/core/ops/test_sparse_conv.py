"""spconv through `interlace.core.ops.sparse_conv`: the CPU fixes, checked against dense conv3d.

spconv's weight layout is (out, kD, kH, kW, in) (KRSC); dense conv3d wants
(out, in, kD, kH, kW), hence the permute(0, 4, 1, 2, 3). spconv computes a
cross-correlation like conv3d (no kernel flip). Float32 with a 1e-4 tolerance: spconv
runs float64 on CPU, but float32 is what training uses.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from interlace.core.ops import sparse_conv as sc

pytestmark = pytest.mark.skipif(not sc.SPCONV_AVAILABLE, reason="spconv not installed")

S = 6  # grid edge


def _active_sites(n: int, edge: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n distinct sites in an edge^3 grid: (n, 4) int32 (b, z, y, x) and (n, 3) long zyx."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(edge ** 3, generator=g)[:n]
    zyx = torch.stack([flat // (edge * edge), (flat // edge) % edge, flat % edge], dim=1)
    return torch.cat([torch.zeros(n, 1, dtype=torch.long), zyx], 1).int(), zyx


def _dense(features: torch.Tensor, zyx: torch.Tensor, edge: int) -> torch.Tensor:
    """(1, C, D, H, W) tensor with features at the sites, zero elsewhere (keeps grad)."""
    out = features.new_zeros((1, features.shape[1], edge, edge, edge))
    out[0, :, zyx[:, 0], zyx[:, 1], zyx[:, 2]] = features.T
    return out


def _dense_weight(sparse_weight: torch.Tensor) -> torch.Tensor:
    return sparse_weight.permute(0, 4, 1, 2, 3)  # KRSC -> (out, in, kD, kH, kW)


def test_spconv_weight_layout_is_out_kernel_in():
    conv = sc.spconv.SubMConv3d(2, 3, 3, padding=1)
    assert tuple(conv.weight.shape) == (3, 3, 3, 3, 2)


def test_subm_and_strided_sparse_conv_match_dense_conv3d_forward_and_backward():
    torch.manual_seed(1)
    indices, zyx = _active_sites(30, S, seed=3)
    feats = torch.randn(30, 2, requires_grad=True)
    subm = sc.spconv.SubMConv3d(2, 3, 3, padding=1, bias=True, indice_key="subm")
    down = sc.spconv.SparseConv3d(3, 4, 3, stride=2, padding=1, bias=True)
    with torch.no_grad():  # non-zero biases so that their gradients are checked too
        subm.bias.normal_()
        down.bias.normal_()

    x = sc.spconv.SparseConvTensor(feats, indices, [S, S, S], batch_size=1)
    h = subm(x)
    y = down(h)
    assert torch.equal(h.indices, indices)  # SubM keeps the input sites, in order
    out_zyx = y.indices[:, 1:].long()
    upstream = torch.randn_like(y.features)
    (y.features * upstream).sum().backward()

    # Dense twin with its own leaves, initialised to the same values.
    feats_d = feats.detach().clone().requires_grad_()
    w1, b1, w2, b2 = (t.detach().clone().requires_grad_()
                      for t in (subm.weight, subm.bias, down.weight, down.bias))
    mask = _dense(torch.ones(30, 1), zyx, S)
    hd = F.conv3d(_dense(feats_d, zyx, S), _dense_weight(w1), b1, padding=1) * mask
    yd = F.conv3d(hd, _dense_weight(w2), b2, stride=2, padding=1)

    # Forward: SubM output at the active sites, strided output at spconv's output sites.
    h_at = hd[0, :, zyx[:, 0], zyx[:, 1], zyx[:, 2]].T
    torch.testing.assert_close(h.features, h_at, atol=1e-4, rtol=1e-4)
    y_at = yd[0, :, out_zyx[:, 0], out_zyx[:, 1], out_zyx[:, 2]].T
    torch.testing.assert_close(y.features, y_at, atol=1e-4, rtol=1e-4)
    # spconv's output sites are exactly those whose 3x3x3 stride-2 window sees an input.
    reach = F.conv3d(mask, torch.ones(1, 1, 3, 3, 3), stride=2, padding=1)[0, 0] > 0
    assert y.spatial_shape == [3, 3, 3]
    assert out_zyx.shape[0] == int(reach.sum())
    assert bool(reach[out_zyx[:, 0], out_zyx[:, 1], out_zyx[:, 2]].all())

    (y_at * upstream).sum().backward()
    for sparse_grad, dense_grad in ((feats.grad, feats_d.grad), (subm.weight.grad, w1.grad),
                                    (subm.bias.grad, b1.grad), (down.weight.grad, w2.grad),
                                    (down.bias.grad, b2.grad)):
        assert sparse_grad is not None and sparse_grad.abs().sum() > 0
        torch.testing.assert_close(sparse_grad, dense_grad, atol=1e-4, rtol=1e-4)


def test_subm_conv_is_exact_on_a_larger_grid_with_openmp_threads():
    # Regression for spconv 2.3.8's racy CPU scatter_add: with 2 OpenMP threads nearly
    # every one of these calls gave wrong features before the fix (the race needs both
    # threads running at once, so a single call can pass by luck: hence the repeats).
    torch.manual_seed(2)
    edge = 16
    indices, zyx = _active_sites(2000, edge, seed=4)
    feats = torch.randn(2000, 8)
    conv = sc.spconv.SubMConv3d(8, 8, 3, padding=1, bias=False)
    dense_out = F.conv3d(_dense(feats, zyx, edge), _dense_weight(conv.weight.detach()),
                         padding=1)[0, :, zyx[:, 0], zyx[:, 1], zyx[:, 2]].T
    errors = [(conv(sc.spconv.SparseConvTensor(feats, indices, [edge] * 3, 1)).features
               - dense_out).abs().max().item() for _ in range(8)]
    assert max(errors) < 1e-4, errors

    # The backward scatters too (into the input gradient): it must be reproducible.
    leaf = feats.clone().requires_grad_()
    x = sc.spconv.SparseConvTensor(leaf, indices, [edge] * 3, 1)
    upstream = torch.randn(2000, 8)
    grads = [torch.autograd.grad((conv(x).features * upstream).sum(), leaf)[0] for _ in range(4)]
    for grad in grads[1:]:
        torch.testing.assert_close(grad, grads[0], atol=1e-5, rtol=0)


def test_layer_given_an_implicit_gemm_algorithm_runs_cpu_inputs_natively():
    # A CUDA spconv build gives small-kernel layers MaskImplicitGemm, which asserts on CPU
    # tensors; the shim runs CPU inputs with Native (same weights) and restores the choice.
    from spconv.core import ConvAlgo
    torch.manual_seed(5)
    indices, zyx = _active_sites(40, S, seed=6)
    feats = torch.randn(40, 2, requires_grad=True)
    conv = sc.spconv.SubMConv3d(2, 3, 3, padding=1, bias=False)
    expected = F.conv3d(_dense(feats.detach(), zyx, S), _dense_weight(conv.weight.detach()),
                        padding=1)[0, :, zyx[:, 0], zyx[:, 1], zyx[:, 2]].T
    conv.algo = ConvAlgo.MaskImplicitGemm  # what a CUDA build would have chosen
    out = conv(sc.spconv.SparseConvTensor(feats, indices, [S] * 3, 1)).features
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    out.sum().backward()
    assert feats.grad is not None and conv.weight.grad.abs().sum() > 0
    assert conv.algo == ConvAlgo.MaskImplicitGemm
    assert sc.patch_spconv_native_on_cpu() is True  # idempotent
    assert not hasattr(type(conv).forward.__wrapped__, "_interlace_spconv_patch")


@pytest.mark.skipif(not sc.spconv_gpu_available(), reason="needs spconv-cu and a GPU")
def test_cuda_layer_matches_its_cpu_run():
    torch.manual_seed(7)
    indices, _ = _active_sites(300, 12, seed=8)
    feats = torch.randn(300, 16)
    conv = sc.spconv.SubMConv3d(16, 16, 3, padding=1, bias=False)
    cpu = conv(sc.spconv.SparseConvTensor(feats, indices, [12] * 3, 1)).features
    gpu = conv.cuda()(sc.spconv.SparseConvTensor(feats.cuda(), indices.cuda(), [12] * 3,
                                                 1)).features
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_patched_get_current_stream_returns_default_stream_without_cuda():
    from spconv.pytorch import cppcore

    assert cppcore.get_current_stream() == 0
    with pytest.raises((AssertionError, RuntimeError)):
        cppcore.get_current_stream.__wrapped__()  # the original still fails


def test_every_spconv_binding_of_get_current_stream_is_the_single_guard():
    from spconv.core_cc.csrc.sparse.all import SpconvOps
    from spconv.pytorch import cppcore, hash as sp_hash, ops, utils

    guard = cppcore.get_current_stream
    scatter = SpconvOps.scatter_add_cpu
    importlib.reload(sc)  # a second import must neither re-wrap nor unpatch
    sc.patch_spconv_cpu_stream()
    sc.patch_spconv_cpu_scatter_add()

    assert cppcore.get_current_stream is guard
    assert not hasattr(guard.__wrapped__, "__wrapped__")  # wraps spconv's original
    assert ops.get_current_stream is guard
    assert sp_hash.get_current_stream is guard
    assert utils.get_current_stream is guard
    for name, module in list(sys.modules.items()):
        if name.startswith("spconv.") and hasattr(module, "get_current_stream"):
            assert module.get_current_stream is guard, name
    assert SpconvOps.scatter_add_cpu is scatter
    assert not hasattr(scatter.__wrapped__, "__wrapped__")


def test_spconv_gpu_available_requires_a_cuda_build_and_a_gpu():
    from spconv.cppconstants import CPU_ONLY_BUILD

    expected = (not CPU_ONLY_BUILD) and torch.cuda.is_available()
    assert sc.spconv_gpu_available() is expected


def test_module_imports_without_spconv(monkeypatch):
    for name in [m for m in sys.modules if m == "spconv" or m.startswith("spconv.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "spconv", None)  # makes `import spconv...` fail
    spec = importlib.util.spec_from_file_location("_sparse_conv_without_spconv", sc.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SPCONV_AVAILABLE is False
    assert module.spconv is None
    assert module.spconv_gpu_available() is False
    assert module.patch_spconv_cpu_stream() is False
