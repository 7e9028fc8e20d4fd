"""Data of the driving check: a generated nuScenes-format database (v1.0-trainval names,
so it can hold more than 10 scenes; about a fifth of the scenes are val and never
trained on), its mmdet3d-layout info files and GT-paste database, written where the
check's configs read them. Its own step kinds (``motion``, ``lag_reversal``,
``voxel_coverage``, ``gt_as_predictions``) are in :mod:`.driving_motion`."""
from __future__ import annotations

import json
import os.path as osp
from pathlib import Path

from .driving_motion import STEP_KINDS

__all__ = ["prepare_data", "STEP_KINDS"]


def prepare_data(data: dict) -> dict:
    """``make_synthetic_nuscenes`` + info files + GT-paste database under ``data['root']``,
    unless it already holds a set made with the same arguments by the same generator
    version (a set from an older generator, or one without a version, is regenerated)."""
    from interlace.core.engine.atomic_files import write_json_atomic
    from interlace.domains.driving.data.gt_paste import create_groundtruth_database
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import GENERATOR_VERSION, \
        make_synthetic_nuscenes
    root = Path(data["root"])
    wanted = dict(scenes=data["scenes"], samples_per_scene=data["samples_per_scene"],
                  version=data["version"], seed=data["seed"], max_sweeps=data["max_sweeps"],
                  generator_version=GENERATOR_VERSION)
    stamp = root / "check_data.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == wanted:
        print(f"reusing {root}", flush=True)
    else:
        make_synthetic_nuscenes(root, wanted["scenes"], wanted["samples_per_scene"],
                                version=wanted["version"], seed=wanted["seed"], verbose=False)
        written = create_nuscenes_infos(root, wanted["version"], root,
                                        max_sweeps=wanted["max_sweeps"], progress=False)
        create_groundtruth_database(str(written["train"]["path"]), str(root), str(root),
                                    max_sweeps=wanted["max_sweeps"])
        write_json_atomic(stamp, wanted)
        print(f"generated {wanted['scenes']} scenes under {root}", flush=True)
    sizes = {}
    for split in ("train", "val"):
        from interlace.domains.driving.data.info_files import load_info_file
        sizes[split] = len(load_info_file(osp.join(root, f"nuscenes_infos_{split}.pkl"))[1])
    return dict(root=str(root), **wanted, **{f"{k}_samples": v for k, v in sizes.items()})
