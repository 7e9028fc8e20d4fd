"""The nuScenes tables of a generated database, and their atomic writing.

Records follow the nuScenes v1.0 schema (https://www.nuscenes.org/nuscenes#data-format):
every record has a 32-hex ``token``; links between records are tokens, and ``prev`` /
``next`` are ``""`` at the ends of a chain. Tokens are md5 digests of the seed and a
record key, so a database is reproducible byte for byte given its seed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from interlace.core.engine.atomic_files import write_bytes_atomic as _write_bytes_atomic
from interlace.core.engine.atomic_files import write_json_atomic as _write_json_atomic

from ..nuscenes_names import ATTRIBUTES, CATEGORY_OF_CLASS, CLASSES

__all__ = ["TABLE_NAMES", "VISIBILITY_LEVELS", "make_token", "static_tables", "link_chain",
           "write_json_atomic", "write_bytes_atomic", "visibility_token"]

TABLE_NAMES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor",
               "ego_pose", "log", "scene", "sample", "sample_data", "sample_annotation", "map")
# (token, level, description) as in nuScenes' visibility.json.
VISIBILITY_LEVELS = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"))
_CATEGORY_DESCRIPTION = {
    "vehicle.car": "Vehicle designed primarily for personal use.",
    "vehicle.truck": "Vehicles primarily designed to haul cargo.",
    "vehicle.construction": "Vehicles primarily designed for construction.",
    "vehicle.bus.rigid": "Rigid bus.",
    "vehicle.trailer": "Any vehicle trailer.",
    "movable_object.barrier": "Temporary road barrier placed in the scene.",
    "vehicle.motorcycle": "Gasoline or electric powered 2-wheeled vehicle.",
    "vehicle.bicycle": "Human or electric powered 2-wheeled vehicle.",
    "human.pedestrian.adult": "Adult subcategory.",
    "movable_object.trafficcone": "All types of traffic cone."}


def make_token(seed: int, *key: object) -> str:
    """A reproducible 32-hex token for the record named by `key`."""
    return hashlib.md5("/".join(map(str, (seed, *key))).encode()).hexdigest()


def visibility_token(fraction: float) -> str:
    """The visibility token ("1".."4") of an object whose visible share is `fraction`."""
    if not fraction == fraction:       # nan: nothing reached it; treat as fully hidden
        return "1"
    return "1" if fraction < 0.4 else "2" if fraction < 0.6 else "3" if fraction < 0.8 else "4"


def static_tables(seed: int, sensor_modalities: dict[str, str]) -> dict[str, list[dict]]:
    """category, attribute, visibility and sensor tables (the same in every database)."""
    return {
        "category": [{"token": make_token(seed, "category", name), "name": name,
                      "description": _CATEGORY_DESCRIPTION[name]}
                     for name in (CATEGORY_OF_CLASS[c] for c in CLASSES)],
        "attribute": [{"token": make_token(seed, "attribute", name), "name": name,
                       "description": name.replace(".", ": ").replace("_", " ")}
                      for name in ATTRIBUTES],
        "visibility": [{"token": token, "level": level, "description": text}
                       for token, level, text in VISIBILITY_LEVELS],
        "sensor": [{"token": make_token(seed, "sensor", channel), "channel": channel,
                    "modality": modality} for channel, modality in sensor_modalities.items()],
    }


def link_chain(records: list[dict[str, Any]]) -> None:
    """Set ``prev`` / ``next`` of time-ordered `records` to their neighbours' tokens."""
    for i, record in enumerate(records):
        record["prev"] = records[i - 1]["token"] if i > 0 else ""
        record["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""


# A generated database is thousands of files that can be made again: atomic, not fsynced.
def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, so no half file is ever seen."""
    _write_bytes_atomic(path, data, fsync=False)


def write_json_atomic(path: Path, content: Any) -> None:
    """JSON-dump `content` to `path` atomically (compact, like the published tables)."""
    _write_json_atomic(path, content, indent=0, fsync=False)
