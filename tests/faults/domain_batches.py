"""Batch-inference set-ups per domain for the fault suite: the domain's real reader and
writer on generated data, with a tiny stand-in model (the faults are in the data and the
engine, not in the network).

- driving: a generated nuScenes database whose info file repeats its samples under new
  tokens (:func:`driving_inputs`), :class:`NuScenesSampleReader` with the tiny
  DeepInteraction test pipeline, :class:`NuScenesSubmissionWriter`, and
  :class:`CentroidDetector` (one box at the points' centroid);
- medical: generated MIMIC-CXR-JPG frontal images copied under distinct study names
  (:func:`medical_inputs`), :class:`CxrImageReader`, :class:`CxrMaskWriter` (PNG), and
  :class:`ThresholdSegmenter` (a 3 x 3 mean filter, restored to the file's size);
- :class:`RssProbe`: wraps a writer and records the process RSS after chosen counts.
"""
from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.structures import InstanceData

from tests.fixtures.tools import ROOT

DRIVING_INFER = ROOT / "configs" / "driving" / "deepinteraction_r18_synthetic_tiny.py"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Resident set size of this process in MiB (``/proc/self/statm``)."""
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * _PAGE / 2**20


# --- driving -----------------------------------------------------------------------------

def driving_inputs(root: Path, copies: int, mutate: Optional[dict] = None) -> dict:
    """A generated v1.0-mini database under `root` and an info file of `copies` samples
    (its val and train samples repeated under new tokens ``tok00000...``).

    `mutate` maps a copy index to a function ``(info, root) -> None`` that damages that
    sample's entry. Returns ``dict(root, info_file, tokens, token_list)``.
    """
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.info_files import load_info_file, save_info_file
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    if not (root / "v1.0-mini").is_dir():
        make_synthetic_nuscenes(root, scenes=2, samples_per_scene=2, version="v1.0-mini",
                                verbose=False)
    written = create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=3, progress=False)
    metainfo, base = load_info_file(written["val"]["path"])
    base = base + load_info_file(written["train"]["path"])[1]
    data_list = []
    for i in range(copies):
        info = _deep_copy(base[i % len(base)])
        info["token"] = f"tok{i:05d}"
        info["sample_idx"] = i
        if mutate and i in mutate:
            mutate[i](info, root)
        data_list.append(info)
    info_file = root / f"infos_{copies}.pkl"
    save_info_file(info_file, metainfo, data_list)
    tokens = [d["token"] for d in data_list]
    token_list = root / f"tokens_{copies}.txt"
    token_list.write_text("".join(f"{t}\n" for t in tokens))
    return dict(root=root, info_file=str(info_file), tokens=tokens, token_list=str(token_list))


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def driving_reader(db: dict):
    from interlace.core.engine.registry import INFERENCE_IO, register_all_modules

    register_all_modules()
    cfg = dict(Config.fromfile(str(DRIVING_INFER)).infer_cfg.reader)
    cfg.update(data_root=str(db["root"]), info_file=db["info_file"])
    return INFERENCE_IO.build(cfg)


def driving_writer():
    from interlace.domains.driving.evaluation.inference_io import NuScenesSubmissionWriter

    return NuScenesSubmissionWriter(modality=dict(use_lidar=True, use_camera=True))


class CentroidDetector(BaseModel):
    """test_step -> the data samples with one car box at the points' centroid."""

    def __init__(self) -> None:
        super().__init__()
        self.size = torch.nn.Parameter(torch.tensor([4.5, 1.9, 1.6]))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        outputs = []
        for points, sample in zip(inputs["points"], data_samples):
            centre = torch.as_tensor(points)[:, :3].float().mean(dim=0)
            box = torch.cat([centre, self.size.detach(), torch.zeros(3)])[None]
            sample.pred_instances_3d = InstanceData(
                bboxes_3d=box, scores_3d=torch.tensor([0.5]), labels_3d=torch.tensor([0]))
            outputs.append(sample)
        return outputs

    def test_step(self, data):
        return self.forward(data["inputs"], data["data_samples"])


# --- medical -----------------------------------------------------------------------------

def medical_inputs(root: Path, studies: int, sources: int = 8, size: int = 64) -> list[str]:
    """`studies` frontal images named ``study00000.jpg ...`` (copies of `sources`
    generated studies at about `size` pixels), in ``root/images``."""
    from interlace.domains.medical.data.mimic import MimicCxrIndex
    from interlace.domains.medical.data.synthetic import make_synthetic_mimic

    generated = root / "generated"
    if not generated.is_dir():
        make_synthetic_mimic(generated, sources, seed=0, min_size=size, max_size=size + 16,
                             lateral_fraction=0.0)
    frontal = [r.img_path for r in MimicCxrIndex(generated, unit="image").build().records]
    folder = root / "images"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(studies):
        path = folder / f"study{i:05d}.jpg"
        if not path.exists():
            shutil.copyfile(frontal[i % len(frontal)], path)
        paths.append(str(path))
    return paths


def medical_reader(image_size: int = 64):
    from interlace.domains.medical.evaluation.masks import CxrImageReader

    return CxrImageReader(image_size=image_size)


def medical_writer():
    from interlace.domains.medical.evaluation.masks import CxrMaskWriter

    return CxrMaskWriter(formats=("png",))


class ThresholdSegmenter(BaseModel):
    """test_step -> [{pred_prob: (H0, W0)}]: sigmoid of a 3 x 3 mean filter of the image,
    padding and resize undone as the real segmenter does."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = torch.nn.Parameter(torch.full((1, 1, 3, 3), 1 / 9))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        from interlace.domains.medical.data.segmentation import restore_original_size

        outputs = []
        for image, sample in zip(inputs, data_samples):
            prob = torch.sigmoid(torch.nn.functional.conv2d(
                torch.as_tensor(image).float()[None], self.kernel, padding=1))[0]
            outputs.append(dict(pred_prob=restore_original_size(prob, sample["seg_geometry"])[0]))
        return outputs

    def test_step(self, data):
        return self.forward(data["inputs"], data["data_samples"])


# --- memory ------------------------------------------------------------------------------

class RssProbe:
    """A writer that delegates to `writer` and records ``rss_mib()`` after the writes
    numbered in `at` (1-based), after a ``gc.collect()``."""

    def __init__(self, writer: Any, at: Sequence[int]) -> None:
        self.writer, self.at = writer, set(at)
        self.count = 0
        self.rss: dict[int, float] = {}

    def output_name(self, path: str) -> str:
        return self.writer.output_name(path)

    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        self.writer.write(outputs, input_path, out_path)
        self.count += 1
        if self.count in self.at:
            del outputs
            gc.collect()
            self.rss[self.count] = rss_mib()
