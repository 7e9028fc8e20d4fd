"""A generated nuScenes-format database with some (or all) cameras taken out: the layout of a
nuScenes-format set from another vehicle (other camera rig) or of a LiDAR-only database."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence


def remove_cameras(root: Path, version: str, channels: Sequence[str]) -> int:
    """Delete `channels` from the database at `root`: their sensor, calibrated_sensor,
    sample_data and ego_pose records and their image folders. Returns the number of
    sample_data records removed."""
    tables = Path(root) / version

    def load(name: str) -> list[dict]:
        return json.loads((tables / f"{name}.json").read_text())

    def save(name: str, records: list[dict]) -> None:
        (tables / f"{name}.json").write_text(json.dumps(records))

    sensors, calibrations = load("sensor"), load("calibrated_sensor")
    sample_data = load("sample_data")
    gone_sensors = {s["token"] for s in sensors if s["channel"] in channels}
    gone_calibrations = {c["token"] for c in calibrations if c["sensor_token"] in gone_sensors}
    kept = [r for r in sample_data if r["calibrated_sensor_token"] not in gone_calibrations]
    gone_poses = {r["ego_pose_token"] for r in sample_data
                  if r["calibrated_sensor_token"] in gone_calibrations}
    save("sample_data", kept)
    save("calibrated_sensor", [c for c in calibrations if c["token"] not in gone_calibrations])
    save("sensor", [s for s in sensors if s["token"] not in gone_sensors])
    save("ego_pose", [p for p in load("ego_pose") if p["token"] not in gone_poses])
    for channel in channels:
        for folder in ("samples", "sweeps"):
            shutil.rmtree(Path(root) / folder / channel, ignore_errors=True)
    return len(sample_data) - len(kept)
