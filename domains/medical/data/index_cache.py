"""A prepared-index cache that goes stale when its source files change.

Building the MIMIC-CXR index reads ~377k metadata rows and ~227k report files; the
result is kept as JSON (plain data, safe to load, unlike pickle) and reused while every
source file keeps its size and modification time and the build options are the same.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from interlace.core.engine.atomic_files import write_json_atomic

__all__ = ["file_signature", "load_cache", "save_cache", "CACHE_VERSION"]

CACHE_VERSION = 1
logger = logging.getLogger(__name__)


def file_signature(paths: Iterable[str | Path]) -> dict[str, list[int]]:
    """{path: [size, mtime_ns]} for each source; a missing file has [-1, -1]."""
    signature = {}
    for path in paths:
        try:
            stat = os.stat(path)
            signature[str(path)] = [stat.st_size, stat.st_mtime_ns]
        except FileNotFoundError:
            signature[str(path)] = [-1, -1]
    return signature


def load_cache(cache_path: str | Path, sources: Iterable[str | Path],
               options: dict[str, Any]) -> dict[str, Any] | None:
    """The cached payload, or None when absent, unreadable or stale (reason logged)."""
    cache_path = Path(cache_path)
    if not cache_path.is_file():
        return None
    try:
        cached = json.loads(cache_path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("%s: unreadable index cache, rebuilding (%s)", cache_path, error)
        return None
    expected = dict(version=CACHE_VERSION, sources=file_signature(sources), options=options)
    for key, value in expected.items():
        if cached.get(key) != value:
            logger.info("%s: index cache is stale (%s changed), rebuilding", cache_path, key)
            return None
    return cached.get("payload")


def save_cache(cache_path: str | Path, sources: Iterable[str | Path],
               options: dict[str, Any], payload: dict[str, Any]) -> None:
    """Write atomically (temporary name, then rename) so a killed run leaves no half file."""
    cache_path = Path(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    document = dict(version=CACHE_VERSION, sources=file_signature(sources), options=options,
                    payload=payload)
    write_json_atomic(cache_path, document, indent=None)
