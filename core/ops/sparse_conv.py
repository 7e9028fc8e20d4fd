"""The one place Interlace imports spconv, with fixes that let its CPU wheel train.

Use it as::

    from interlace.core.ops.sparse_conv import spconv, SPCONV_AVAILABLE
    conv = spconv.SubMConv3d(16, 32, 3, padding=1, indice_key="subm1")

Why the shim exists: spconv 2.x's CPU wheel runs the forward pass of its convolutions
on CPU, but the backward pass (and its hash table / point-to-voxel helpers) asks for
the current CUDA stream through ``spconv.pytorch.cppcore.get_current_stream()``, which
evaluates ``torch.cuda.current_stream().cuda_stream``. On a CPU-only PyTorch that
raises ``AssertionError: Torch not compiled with CUDA enabled`` even though the CPU
kernels never use the stream. We replace the function with a guarded one that returns
0 (the CUDA default stream handle; CPU kernels ignore it) when CUDA is unavailable and
calls spconv's original otherwise, so GPU behaviour is unchanged.

The function is imported *by name* into several spconv modules (``spconv.pytorch.ops``,
``spconv.pytorch.hash``, ``spconv.pytorch.utils`` and the quantization modules), so
patching only ``cppcore`` would not reach the already-bound copies: we rebind every
copy in a loaded ``spconv`` module, and modules imported later pick the patched one up
from ``cppcore``. The patch is applied once: the wrapper is marked, and a second import
(or ``importlib.reload``) of this module reuses it instead of wrapping the wrapper.

A second fix: spconv 2.3.8's CPU ``scatter_add_cpu``
(used by the forward *and* backward of every sparse convolution on CPU) runs an OpenMP
loop whose row pointers are shared between threads, so with more than one OpenMP
thread rows can be added to the wrong output site: results are wrong at random (most
calls of a 2,000-site, 8-channel SubMConv3d on 2 cores, forward and input gradient;
exact with ``OMP_NUM_THREADS=1``). We replace it with ``torch.Tensor.index_add_`` on
zero-copy views of the same buffers, which is race-free. bfloat16 CPU buffers (test-only
in spconv; numpy has no bfloat16 view) keep spconv's kernel.

A third: a CUDA build of spconv (e.g. spconv-cu126) gives every
small-kernel layer the ``MaskImplicitGemm`` algorithm at construction, and that path
asserts ``implicit gemm only support cuda`` on CPU tensors, so a model built there could
not run on CPU (CPU inference, tests, a checkpoint moved to a CPU box). Our wrapper of
``SparseConvolution.forward`` runs CPU inputs with the ``Native`` algorithm (the weights
have one layout for every algorithm) and leaves CUDA inputs untouched.
"""
from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any, Callable, Optional

import torch

__all__ = [
    "spconv",
    "SPCONV_AVAILABLE",
    "spconv_gpu_available",
    "patch_spconv_cpu_stream",
    "patch_spconv_cpu_scatter_add",
    "patch_spconv_native_on_cpu",
]

# Marker attribute set on our replacements so that re-imports recognise them.
_PATCH_MARK = "_interlace_spconv_patch"

spconv: Optional[ModuleType]
try:
    import spconv.pytorch as _spconv_pytorch
    from spconv.pytorch import cppcore as _cppcore
except ImportError:  # spconv not installed: the project must still import.
    spconv = None
    _cppcore = None
    SPCONV_AVAILABLE = False
else:
    spconv = _spconv_pytorch
    SPCONV_AVAILABLE = True


def _make_guarded(original: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap spconv's ``get_current_stream`` so it works without CUDA.

    Args:
        original: spconv's own ``get_current_stream`` (never one of our wrappers).

    Returns:
        A function returning ``0`` when CUDA is unavailable, else ``original()``.
    """

    @functools.wraps(original)
    def get_current_stream() -> Any:
        if not torch.cuda.is_available():
            # 0 is the default-stream handle; the CPU kernels accept and ignore it.
            return 0
        return original()

    setattr(get_current_stream, _PATCH_MARK, True)
    return get_current_stream


def patch_spconv_cpu_stream() -> bool:
    """Install the guarded ``get_current_stream`` everywhere spconv has bound it.

    Idempotent: calling it again (or re-importing this module) neither wraps the
    wrapper nor leaves any module with the unguarded original.

    Returns:
        True if spconv is installed and the patch is in place, False otherwise.
    """
    if _cppcore is None:
        return False
    current = _cppcore.get_current_stream
    if getattr(current, _PATCH_MARK, False):
        guarded = current
        original = current.__wrapped__
    else:
        original = current
        guarded = _make_guarded(original)
        _cppcore.get_current_stream = guarded
    # Rebind the copies that `from spconv.pytorch.cppcore import get_current_stream`
    # made in modules loaded before the patch (ops, hash, utils, quantization, ...).
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "spconv" or name.startswith("spconv.")):
            continue
        if getattr(module, "get_current_stream", None) is original:
            module.get_current_stream = guarded
    return True


def _replace_once(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Set ``owner.name = make(current)`` unless `current` is already one of our patches."""
    current = getattr(owner, name)
    if not getattr(current, _PATCH_MARK, False):
        setattr(owner, name, make(current))


def _make_scatter_add(original: Callable[..., Any]) -> Callable[..., Any]:
    """Build a race-free replacement for ``SpconvOps.scatter_add_cpu``.

    The call is ``scatter_add_cpu(out, inp, inds)`` on cumm ``tv.Tensor`` s:
    ``out[inds[i]] += inp[i]`` for ``i < len(inds)``, where ``out`` is (N_out, C),
    ``inp`` a (>= nhot, C) buffer and ``inds`` (nhot,) int32.
    """

    def scatter_add_cpu(out: Any, inp: Any, inds: Any) -> None:
        try:
            out_t = torch.from_numpy(out.numpy_view())
            inp_t = torch.from_numpy(inp.numpy_view())
            idx = torch.from_numpy(inds.numpy_view()).long()
        except Exception:  # dtype numpy cannot view (bfloat16): spconv's kernel
            original(out, inp, inds)
            return
        if idx.numel() > 0:
            # In place through the shared memory; index_add_ is correct on CPU.
            out_t.index_add_(0, idx, inp_t[: idx.numel()])

    setattr(scatter_add_cpu, _PATCH_MARK, True)
    scatter_add_cpu.__wrapped__ = original  # type: ignore[attr-defined]
    return scatter_add_cpu


def patch_spconv_cpu_scatter_add() -> bool:
    """Replace spconv's racy CPU ``scatter_add_cpu`` (see the module docstring), once.

    Returns:
        True if spconv is installed and the replacement is in place, False otherwise.
    """
    if _cppcore is None:
        return False
    from spconv.core_cc.csrc.sparse.all import SpconvOps

    # One class object shared by every spconv module: patching it reaches all uses.
    _replace_once(SpconvOps, "scatter_add_cpu",
                  lambda current: staticmethod(_make_scatter_add(current)))
    return True


def _make_native_on_cpu(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``SparseConvolution.forward``: CPU inputs run the Native algorithm."""

    from spconv.core import ConvAlgo

    @functools.wraps(original)
    def forward(self: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
        if self.algo == ConvAlgo.Native or input.features.is_cuda:
            return original(self, input, *args, **kwargs)
        # Weights are KRSC for every algorithm (spconv.constants.ALL_WEIGHT_IS_KRSC), so
        # the same parameters run the CPU Native kernels; restore the layer's own choice.
        algo, self.algo = self.algo, ConvAlgo.Native
        try:
            return original(self, input, *args, **kwargs)
        finally:
            self.algo = algo

    setattr(forward, _PATCH_MARK, True)
    return forward


def patch_spconv_native_on_cpu() -> bool:
    """Let layers built by a CUDA spconv run on CPU tensors (see the module docstring), once.

    Returns:
        True if spconv is installed and the wrapper is in place, False otherwise.
    """
    if _cppcore is None:
        return False
    from spconv.pytorch.conv import SparseConvolution

    _replace_once(SparseConvolution, "forward", _make_native_on_cpu)
    return True


patch_spconv_cpu_stream()
patch_spconv_cpu_scatter_add()
patch_spconv_native_on_cpu()


def spconv_gpu_available() -> bool:
    """Whether spconv can run on GPU here: a CUDA build of spconv and a usable GPU.

    Returns:
        False if spconv is missing, is the CPU-only wheel, or CUDA is unavailable.
    """
    if not SPCONV_AVAILABLE or not torch.cuda.is_available():
        return False
    try:
        from spconv.cppconstants import CPU_ONLY_BUILD
    except Exception:  # an unusual spconv layout: be conservative for a report
        return False
    return not bool(CPU_ONLY_BUILD)
