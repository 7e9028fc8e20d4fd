"""Atomic file writes: a reader never sees a half-written output (DESIGN.md: write to a
temporary name in the target folder, then rename)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

__all__ = ["write_json_atomic"]


def write_json_atomic(path: str | os.PathLike, payload: Any, *, indent: Optional[int] = 2,
                      allow_nan: bool = True) -> Path:
    """Write `payload` as JSON to `path` through a temporary file in the same folder and
    ``os.replace``; the temporary file is removed if anything fails (also on Ctrl-C).

    ``allow_nan=False`` refuses NaN / infinity, for formats whose readers reject them.
    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=indent, allow_nan=allow_nan)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
