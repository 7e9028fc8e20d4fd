"""Reading data pickles (info files, GT-paste databases) without running code from them.

``pickle.load`` calls whatever callable a file names, so a crafted
``nuscenes_infos_train.pkl`` runs arbitrary code on whoever opens it. Info files and
GT-paste databases hold only builtin containers and scalars and numpy arrays, so
:func:`load_pickle` / :func:`loads` resolve only those names and refuse every other with
:class:`UnsafePickleError`, naming the file and the ``module.name`` the file asked for,
before anything from the file is called.

Allowed (the names pickles of these objects refer to, protocols 0-5):

- builtins: ``dict list tuple set frozenset str bytes bytearray int float complex bool``
  and ``collections.OrderedDict``;
- ``_codecs.encode``, bound to a function that only turns text into latin-1 bytes (how
  protocols 0-2, e.g. mmengine's ``dump`` of an mmdet3d info file, store ``bytes`` and
  array buffers);
- numpy: ``numpy.ndarray``, ``numpy.dtype`` and the reconstructors numpy's pickles name,
  ``multiarray._reconstruct``, ``multiarray.scalar`` and ``numeric._frombuffer``, under
  both ``numpy.core`` (numpy 1.x) and ``numpy._core`` (numpy 2.x); either spelling loads
  with the installed numpy.

Object arrays load too: their elements go through the same restricted lookup.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import numpy as np

from .checkpoint import UnsafeCheckpointError

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_pickle", "loads", "allowed_globals"]

PathLike = Union[str, "os.PathLike[str]"]

_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
             "float", "complex", "bool")


class UnsafePickleError(UnsafeCheckpointError):
    """A data pickle names a global outside the allowlist. ``refused`` is ``module.name``,
    ``source`` the file (or ``'<bytes>'``). A subclass of
    :class:`~interlace.core.engine.checkpoint.UnsafeCheckpointError`, so
    ``pickle.UnpicklingError``, ``ValueError`` and the tools' one-line error path
    (exit 2) all catch it."""

    def __init__(self, message: str, refused: str, source: str) -> None:
        super().__init__(message, refused=refused)
        self.source = source


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it: ``encode(str, 'latin1')`` -> bytes.
    Any other codec is refused (codecs are looked up by name and may import modules)."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() not in (
            "latin1", "iso88591"):
        raise pickle.UnpicklingError(
            f"_codecs.encode is allowed only as encode(str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1", errors)


def _numpy_core() -> tuple[Any, Any]:
    """The installed numpy's ``multiarray`` and ``numeric`` modules (``numpy._core`` in
    numpy 2, ``numpy.core`` in numpy 1)."""
    try:
        from numpy._core import multiarray, numeric  # type: ignore[attr-defined]
    except ImportError:
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


def allowed_globals() -> dict[tuple[str, str], Callable]:
    """``(module, name)`` -> the object :class:`RestrictedUnpickler` hands out for it."""
    multiarray, numeric = _numpy_core()
    allowed: dict[tuple[str, str], Callable] = {
        ("builtins", name): getattr(builtins, name) for name in _BUILTINS}
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = _latin1_encode
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


_ALLOWED = allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` hands out only :func:`allowed_globals`.

    ``find_class`` is the only way a pickle reaches a callable (``GLOBAL`` /
    ``STACK_GLOBAL``; ``REDUCE``, ``NEWOBJ``, ``INST`` and ``OBJ`` all take what it
    returned), and persistent ids are refused by ``pickle.Unpickler`` itself, so nothing
    outside the allowlist can be called. Nothing is imported either: numpy is already
    loaded and the rest are builtins.
    """

    def __init__(self, stream: BinaryIO, source: str = "<bytes>") -> None:
        super().__init__(stream)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 written by Python 3 name Python 2's modules (__builtin__, copy_reg).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load '{module}.{name}': this pickle may hold only "
                "builtin containers and scalars and numpy arrays / dtypes / scalars, and "
                "unpickling anything else could run code from the file. Rewrite the file "
                "with plain data, or load it with pickle only if you trust its origin.",
                refused=f"{module}.{name}", source=self.source)
        return found


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` with :class:`RestrictedUnpickler`; `source` names it in errors.

    Raises:
        UnsafePickleError: the data names a global outside :func:`allowed_globals`.
        pickle.UnpicklingError, EOFError, ValueError: the data is not a (whole) pickle.
    """
    return RestrictedUnpickler(io.BytesIO(data), source=source).load()


def load_pickle(path: PathLike) -> Any:
    """Read a data pickle (info file, GT-paste database) with :class:`RestrictedUnpickler`.

    Raises:
        FileNotFoundError: `path` does not exist or is not a file.
        UnsafePickleError: the file names a global outside :func:`allowed_globals`; the
            message names the file and the global, and nothing from the file was called.
        pickle.UnpicklingError, EOFError, ValueError: the file is not a (whole) pickle.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        what = "is a directory, not a pickle" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{path} {what}")
    with path.open("rb") as stream:
        return RestrictedUnpickler(stream, source=str(path)).load()
