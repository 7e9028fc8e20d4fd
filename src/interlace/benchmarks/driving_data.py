"""Driving data-loading benchmarks (`tools/analysis_tools/benchmark.py driving_data`): one
nuScenes-scale training sample loaded and augmented by the full pipeline, through a torch
DataLoader.

Full scale (what a nuScenes training sample costs): a key frame and 10 sweeps of 34,720
points each as ``.pcd.bin`` (5 float32 per point), six 1600 x 900 JPEGs (quality 90,
textured so that they decode like camera images), 40 ground-truth boxes. The case's setup
writes them to a temporary directory with the info-dict layout the dataset produces, so
the benchmark needs no nuScenes download. The pipeline: LoadPointsFromFile,
LoadPointsFromMultiSweeps (10 sweeps), LoadMultiViewImages, LoadAnnotations3D,
ImageResizeCrop (448 x 800, scale 0.48: 768 x 432 resized, so the crop also pads),
GlobalRotScaleTrans, RandomFlip3D, PointsRangeFilter, ObjectRangeFilter, ObjectNameFilter,
ImageNormalize, PointShuffle, Pack3DDetInputs.

``ours`` iterates a DataLoader over 8 copies of the sample (batch 2, ``pseudo_collate``)
with 0 or 2 worker processes; samples/s = 8 / time and is written to the notes after
every run. With workers the loader is persistent and the setup runs one pass first, so
the timed runs measure steady-state throughput, not process start-up. The images leave
the pipeline normalised as float32 (BEVFusion's order), so each sample sends ~26 MB of
image tensors from a worker to the main process through shared memory.

Memory: the harness reports the benchmark process's own peak RSS (VmHWM); DataLoader
worker processes are separate processes and are **not** included. For the 2-worker case
the notes add each worker's own VmHWM, read from /proc/<pid>/status after the run (that
figure counts pages shared copy-on-write with the parent, so the sum overstates the
extra memory). Smoke scale: 200-point sweeps, 2 sweeps, 90 x 160 images, 4 samples.
"""
from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .common import BenchCase, Prepared

POINT_CLOUD_RANGE = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]


def _sizes(scale: str) -> dict:
    if scale == "smoke":
        return dict(points=200, sweeps=2, image=(90, 160), final_dim=(44, 80), resize=0.5,
                    boxes=5, samples=4)
    return dict(points=34720, sweeps=10, image=(900, 1600), final_dim=(448, 800), resize=0.48,
                boxes=40, samples=8)


def _points(rng: np.random.Generator, n: int) -> np.ndarray:
    # Rings on the ground plus clutter up to 60 m: roughly a LiDAR sweep's distribution.
    radius = rng.gamma(2.0, 8.0, n).clip(1.0, 80.0)
    angle = rng.uniform(-math.pi, math.pi, n)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle),
                            rng.normal(-1.0, 1.0, n), rng.uniform(0, 255, n),
                            rng.integers(0, 32, n)]).astype(np.float32)


def _image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(u / 37.0 + c) * np.cos(v / 23.0 - c) for c in range(3)],
                    axis=-1)
    return (base + rng.normal(0, 6, (height, width, 3))).clip(0, 255).astype(np.uint8)


def _camera(yaw: float, height: int, width: int) -> dict:
    """A nuScenes-like camera at the LiDAR origin looking along yaw (x right, y down, z ahead)."""
    c, s = math.cos(yaw), math.sin(yaw)
    forward, left = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = np.stack([-left, [0.0, 0.0, -1.0], forward])
    f = 1266.0 * width / 1600
    cam2img = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    k4 = np.eye(4)
    k4[:3, :3] = cam2img
    return dict(cam2img=cam2img, lidar2cam=lidar2cam, cam2ego=np.eye(4),
                lidar2img=k4 @ lidar2cam, timestamp=0.0)


def write_sample(root: Path, scale: str, seed: int = 0) -> dict[str, Any]:
    """Write one sample's files under ``root`` and return its info dict (the dataset's
    ``parse_data_info`` layout)."""
    import cv2

    from interlace.domains.driving.data.nuscenes_names import CAMERAS

    sizes = _sizes(scale)
    rng = np.random.default_rng(seed)
    key = root / "samples" / "key.pcd.bin"
    key.parent.mkdir(parents=True, exist_ok=True)
    _points(rng, sizes["points"]).tofile(key)
    sweeps = []
    for i in range(sizes["sweeps"]):
        path = root / "sweeps" / f"sweep{i}.pcd.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        _points(rng, sizes["points"]).tofile(path)
        lag = 0.05 * (i + 1)
        s2l = np.eye(4)
        s2l[0, 3] = -10.0 * lag  # the ego drove forward at 10 m/s
        sweeps.append(dict(lidar_points=dict(lidar_path=str(path), lidar2ego=np.eye(4)),
                           ego2global=np.eye(4), timestamp=100.0 - lag, sensor2lidar=s2l,
                           time_lag=lag))
    height, width = sizes["image"]
    images = {}
    for v, cam in enumerate(CAMERAS):
        path = root / "samples" / f"{cam}.jpg"
        cv2.imwrite(str(path), _image(rng, height, width), [cv2.IMWRITE_JPEG_QUALITY, 90])
        yaw = [0.0, -0.96, 0.96, math.pi, 1.92, -1.92][v]
        images[cam] = dict(img_path=str(path), **_camera(yaw, height, width))
    n = sizes["boxes"]
    boxes = np.column_stack([rng.uniform(-50, 50, (n, 2)), rng.uniform(-1, 1, n),
                             rng.uniform(1, 5, n), rng.uniform(0.5, 2.5, n), rng.uniform(1, 3, n),
                             rng.uniform(-math.pi, math.pi, n), rng.normal(0, 3, (n, 2))])
    return dict(token="bench", sample_idx=0, timestamp=100.0, scene_token="scene",
                ego2global=np.eye(4),
                lidar_points=dict(lidar_path=str(key), num_pts_feats=5, lidar2ego=np.eye(4)),
                lidar_sweeps=sweeps, images=images,
                ann_info=dict(gt_bboxes_3d=boxes.astype(np.float32),
                              gt_labels_3d=rng.integers(0, 10, n), gt_names=["car"] * n))


def training_pipeline(scale: str) -> list[dict]:
    """The full training pipeline as config dicts."""
    from interlace.domains.driving.data.nuscenes_names import CLASSES

    sizes = _sizes(scale)
    return [
        dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
        dict(type="LoadPointsFromMultiSweeps", sweeps_num=sizes["sweeps"], load_dim=5,
             use_dim=5),
        dict(type="LoadMultiViewImages"),
        dict(type="LoadAnnotations3D"),
        dict(type="ImageResizeCrop", final_dim=sizes["final_dim"],
             resize_lim=(sizes["resize"], sizes["resize"]), bot_pct_lim=(0.0, 0.0),
             is_train=True),
        dict(type="GlobalRotScaleTrans", rot_range=(-0.785, 0.785),
             scale_ratio_range=(0.9, 1.1), translation_std=(0.5, 0.5, 0.5)),
        dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
        dict(type="PointsRangeFilter", point_cloud_range=POINT_CLOUD_RANGE),
        dict(type="ObjectRangeFilter", point_cloud_range=POINT_CLOUD_RANGE),
        dict(type="ObjectNameFilter", classes=CLASSES),
        dict(type="ImageNormalize", to_rgb=True),
        dict(type="PointShuffle"),
        dict(type="Pack3DDetInputs"),
    ]


class _RepeatedSample:
    """A map-style dataset: ``length`` copies of one info dict through the pipeline."""

    def __init__(self, info: dict, pipeline: Callable[[dict], dict], length: int) -> None:
        self.info, self.pipeline, self.length = info, pipeline, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.pipeline(copy.deepcopy(self.info))


def _vm_hwm_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _loader_case(num_workers: int) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        import torch
        from mmengine.dataset import Compose, pseudo_collate

        import interlace.domains.driving.data.transforms  # noqa: F401  registers them
        from interlace.core.engine.registry import TRANSFORMS

        tmp = tempfile.TemporaryDirectory(prefix="interlace-driving-bench-")
        info = write_sample(Path(tmp.name), scale)
        pipeline = Compose([TRANSFORMS.build(t) for t in training_pipeline(scale)])
        samples = _sizes(scale)["samples"]
        loader = torch.utils.data.DataLoader(
            _RepeatedSample(info, pipeline, samples), batch_size=2, shuffle=False,
            num_workers=num_workers, collate_fn=pseudo_collate,
            persistent_workers=num_workers > 0)
        base_notes = (f"samples/s = {samples} / time; batch 2, {num_workers} workers, "
                      f"{_sizes(scale)['sweeps']} sweeps")
        prepared = Prepared(ours=lambda: None, notes=base_notes)

        def run() -> int:
            import time

            start, cpu_start = time.perf_counter(), time.process_time()
            count = 0
            for batch in loader:
                count += len(batch["inputs"])
            elapsed = time.perf_counter() - start
            # CPU seconds of this process per sample: unlike wall time, not inflated when
            # other processes share the cores.
            cpu = (time.process_time() - cpu_start) / max(count, 1)
            notes = (f"{base_notes}; last run {count / elapsed:.2f} samples/s, "
                     f"{cpu:.3f} CPU s/sample in the main process")
            iterator = getattr(loader, "_iterator", None)
            workers = getattr(iterator, "_workers", []) if iterator is not None else []
            if workers:
                peaks = ", ".join(f"{_vm_hwm_mib(w.pid):.0f}" for w in workers)
                notes += f"; worker VmHWM MiB (not in the table's peak): {peaks}"
            prepared.notes = notes
            prepared._keep = tmp  # the files live as long as the case
            return count

        if num_workers:
            for _ in loader:  # start the persistent workers outside the timed runs
                pass
        prepared.ours = run
        return prepared
    return setup


CASES = [
    BenchCase("pipeline_workers0",
              "nuScenes-scale training sample (10 sweeps x 34,720 pts, 6 x 1600x900 JPEG) "
              "through the full pipeline, DataLoader num_workers=0, 8 samples",
              _loader_case(0), repeats=2, tags=["driving"]),
    BenchCase("pipeline_workers2",
              "same, DataLoader num_workers=2 (persistent), 8 samples",
              _loader_case(2), repeats=2, tags=["driving"]),
]
