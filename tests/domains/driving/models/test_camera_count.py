"""The tiny DeepInteraction config on databases with another camera count: 3 views train
both streams; no camera at all (a LiDAR-only database) runs the fusion model's LiDAR-only
path."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine.registry import init_default_scope

from interlace.core.engine.registry import register_all_modules

from interlace.domains.driving.data.nuscenes_names import CAMERAS
from tests.domains.driving.camera_sets import remove_cameras
from tests.domains.driving.models.test_detectors import (FUSION_TINY, build, grad_norm,
                                                         losses_and_backward, pipeline_batch,
                                                         tiny_config)

THREE = ("CAM_FRONT", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


def _database(root, cameras):
    """A generated v1.0-mini database (2 scenes x 2 samples) keeping only `cameras`, with
    info files listing them."""
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    register_all_modules()
    init_default_scope("interlace")
    make_synthetic_nuscenes(root, scenes=2, samples_per_scene=2, version="v1.0-mini",
                            verbose=False)
    remove_cameras(root, "v1.0-mini", [c for c in CAMERAS if c not in cameras])
    create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=3, progress=False,
                          cameras=cameras)
    return root


@pytest.fixture(scope="module")
def three_view_db(tmp_path_factory):
    return _database(tmp_path_factory.mktemp("three_views"), THREE)


@pytest.fixture(scope="module")
def lidar_only_db(tmp_path_factory):
    return _database(tmp_path_factory.mktemp("no_views"), ())


def test_fusion_model_trains_both_streams_on_three_views(three_view_db):
    cfg = tiny_config(FUSION_TINY, three_view_db)
    batch = pipeline_batch(cfg, indices=(0, 1))
    assert all(tuple(img.shape[:2]) == (3, 3) for img in batch["inputs"]["img"])
    model = build(cfg)
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    assert tuple(data["inputs"]["imgs"].shape[:2]) == (2, 3)
    assert tuple(data["inputs"]["batch_geometry"]["lidar2img"].shape) == (2, 3, 4, 4)
    losses = losses_and_backward(model, batch)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert grad_norm(model.camera_encoder) > 0
    assert grad_norm(model.interaction_encoder) > 0


def test_fusion_model_takes_the_lidar_only_path_without_cameras(lidar_only_db):
    cfg = tiny_config(FUSION_TINY, lidar_only_db)
    batch = pipeline_batch(cfg, indices=(0, 1))
    assert "img" not in batch["inputs"]
    model = build(cfg)
    losses = losses_and_backward(model, batch)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert grad_norm(model.camera_encoder) == 0
    assert grad_norm(model.lidar_encoder) > 0
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        assert data["inputs"]["imgs"] is None
        samples = model(**data, mode="predict")
    assert all(len(s.pred_instances_3d.scores_3d) > 0 for s in samples)
