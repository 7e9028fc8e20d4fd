"""Data of the remote-sensing check: the generated Sentinel-1/2 tiles and their band
statistics, written where the check's configs read them."""
from __future__ import annotations

import json
import os
import os.path as osp

__all__ = ["prepare_data"]


def prepare_data(data: dict) -> dict:
    """Generate ``make_synthetic_s1s2(root, tiles, size, dates, seed)`` unless `root`
    already holds a set made with the same arguments, then the band statistics over every
    tile (no labels are used, so the held-out tiles leak nothing)."""
    from interlace.domains.remote_sensing.data import (BAND_STATS_FILE, ModalitySpec,
                                                       build_catalog, compute_band_stats,
                                                       make_synthetic_s1s2, save_band_stats)
    from interlace.domains.remote_sensing.data.sentinel_dataset import DEFAULT_MODALITIES
    root = data["root"]
    wanted = dict(tiles=data["tiles"], size=data["size"], dates=data["dates"], seed=data["seed"])
    stamp = osp.join(root, "check_data.json")
    if not (osp.isfile(stamp) and json.load(open(stamp, encoding="utf-8")) == wanted):
        summary = make_synthetic_s1s2(root, **wanted)
        print(f"generated {len(summary['tiles'])} tiles under {root}", flush=True)
        stats = osp.join(root, BAND_STATS_FILE)
        specs = [ModalitySpec(name=n, **DEFAULT_MODALITIES[n]) for n in ("s2", "s1")]
        save_band_stats(compute_band_stats(build_catalog(root, specs), specs), stats)
        from interlace.core.engine.atomic_files import write_json_atomic
        write_json_atomic(stamp, wanted)
    else:
        print(f"reusing {root}", flush=True)
    return dict(root=os.fspath(root), **wanted)
