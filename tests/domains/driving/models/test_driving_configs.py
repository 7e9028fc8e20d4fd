"""configs/driving: every config builds its model, names only registered types, and the
paper configs hold DeepInteraction++'s published settings
(docs/methods/deepinteraction.md)."""
from __future__ import annotations

import functools

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from interlace.core.engine.registry import (DATASETS, METRICS, MODELS, TRANSFORMS,
                                            register_all_modules)
from interlace.domains.driving.models import detectors  # noqa: F401  registers the detectors
from tests.fixtures.tools import ROOT

CONFIG_DIR = ROOT / "configs" / "driving"
PAPER = ["transfusion_l_nus", "deepinteraction_r50_nus", "deepinteraction_pp_swint_nus"]
TINY = ["transfusion_l_synthetic_tiny", "deepinteraction_r18_synthetic_tiny"]


@pytest.fixture(scope="module", autouse=True)
def _scope():
    register_all_modules()
    init_default_scope("interlace")


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / f"{name}.py"))


@functools.lru_cache(maxsize=None)
def built(name: str) -> torch.nn.Module:
    """The config's model, built once per module (the paper ones take ~0.5 s each)."""
    return MODELS.build(load(name).model)


def _pipelines(cfg: Config):
    train = cfg.train_dataloader.dataset
    yield train.dataset.pipeline if train.type == "CBGSDataset" else train.pipeline
    yield cfg.val_dataloader.dataset.pipeline
    yield cfg.test_dataloader.dataset.pipeline


def test_every_driving_config_is_covered():
    found = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.endswith("_infer"))
    assert found == sorted(PAPER + TINY)


@pytest.mark.parametrize("name", PAPER + TINY)
def test_config_builds_its_model_and_names_registered_types(name):
    cfg = load(name)
    model = built(name)
    assert sum(p.numel() for p in model.parameters()) > 0
    for pipeline in _pipelines(cfg):
        for transform in pipeline:
            assert TRANSFORMS.get(transform["type"]) is not None, transform["type"]
    assert DATASETS.get(cfg.train_dataloader.dataset.type) is not None
    assert cfg.train_dataloader.dataset.type == "CBGSDataset"
    assert METRICS.get(cfg.val_evaluator.type) is not None
    assert cfg.val_evaluator.type == "NuScenesMetric"


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_use_the_published_lidar_and_training_settings(name):
    cfg = load(name)
    model = built(name)
    voxel = cfg.model.data_preprocessor.voxel_layer
    assert voxel.voxel_size == [0.075, 0.075, 0.2]
    assert voxel.point_cloud_range == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    assert voxel.max_num_points == 10 and tuple(voxel.max_voxels) == (120000, 160000)
    assert model.lidar_encoder.middle_encoder.sparse_shape == [41, 1440, 1440]
    assert model.lidar_encoder.bev_shape == (180, 180)
    assert model.lidar_encoder.out_channels == 512
    head = model.bbox_head
    assert head.num_queries == 200 and head.num_classes == 10
    assert head.bbox_coder.post_center_range == (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    assert cfg.data_root == "data/nuscenes"
    train_types = [t["type"] for t in cfg.train_dataloader.dataset.dataset.pipeline]
    assert {"GlobalRotScaleTrans", "RandomFlip3D"} <= set(train_types)
    sweeps = [t for t in cfg.train_dataloader.dataset.dataset.pipeline
              if t["type"] == "LoadPointsFromMultiSweeps"]
    assert sweeps[0]["sweeps_num"] == 10
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == "AdamW" and optim.optimizer.lr == 1e-4
    assert optim.optimizer.weight_decay == 0.01 and optim.clip_grad.max_norm == 0.1


def test_lidar_only_stage_pastes_ground_truth_and_decodes_on_the_bev():
    cfg = load("transfusion_l_nus")
    train_types = [t["type"] for t in cfg.train_dataloader.dataset.dataset.pipeline]
    assert "ObjectSample" in train_types and "LoadMultiViewImages" not in train_types
    assert built("transfusion_l_nus").bbox_head.decoder.layer_streams == ("a",)
    assert cfg.train_cfg.max_epochs == 20


@pytest.mark.parametrize("name, backbone, strides, levels, epochs",
                         [("deepinteraction_r50_nus", "MonaiResNetBackbone", (4,), 1, 6),
                          ("deepinteraction_pp_swint_nus", "MonaiSwinBackbone", (4, 8), 2, 9)])
def test_fusion_configs_hold_the_published_camera_encoder_and_decoder(name, backbone, strides,
                                                                      levels, epochs):
    cfg = load(name)
    model = built(name)
    assert type(model.camera_encoder.backbone).__name__ == backbone
    assert model.camera_encoder.out_strides == strides
    assert model.camera_encoder.out_channels[0] == 256
    assert model.num_bev_levels == levels
    encoder = model.interaction_encoder
    assert len(encoder.layers) == 2 and encoder.embed_dims == 128
    assert encoder.layers[0].branch_a.ffn[0].out_features == 512
    assert model.bbox_head.decoder.layer_streams == ("a", "b", "a", "b", "a")
    assert model.bbox_head.lidar_only_heatmap_conv is not None
    assert model.pillar_grid.grid_shape == (180, 180)
    image_aug = [t for t in cfg.train_dataloader.dataset.dataset.pipeline
                 if t["type"] == "ImageResizeCrop"]
    assert tuple(image_aug[0]["final_dim"]) == (448, 800)
    assert cfg.train_cfg.max_epochs == epochs
    assert model.bbox_head.decoder.look_forward_twice == (name == "deepinteraction_pp_swint_nus")


def _lr_curve(cfg: Config, epoch_length: int = 10) -> list[float]:
    """The learning rate of every iteration under the config's param_scheduler."""
    from mmengine.registry import PARAM_SCHEDULERS

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))],
                                  lr=cfg.optim_wrapper.optimizer.lr, betas=(0.95, 0.99))
    schedulers = []
    for scheduler in cfg.param_scheduler:
        scheduler = dict(scheduler)
        kind = PARAM_SCHEDULERS.get(scheduler.pop("type"))
        scheduler.pop("convert_to_iter_based")
        schedulers.append(kind.build_iter_from_epoch(optimizer, epoch_length=epoch_length,
                                                     **scheduler))
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs * epoch_length):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return lrs


@pytest.mark.parametrize("name", PAPER)
def test_cyclic_schedule_rises_tenfold_over_forty_percent_then_decays(name):
    cfg = load(name)
    lrs = _lr_curve(cfg)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(1e-4)
    assert max(lrs) == pytest.approx(1e-3, rel=0.05)
    assert 0.35 <= peak / len(lrs) <= 0.45
    assert lrs[-1] < 1e-5


@pytest.mark.parametrize("name", TINY)
def test_tiny_configs_are_sized_for_a_cpu(name):
    cfg = load(name)
    model = built(name)
    assert cfg.data_root == "data/nuscenes_synthetic" and cfg.version == "v1.0-mini"
    assert model.lidar_encoder.bev_shape == (64, 64)
    assert model.bbox_head.num_queries <= 64
    if name.startswith("deepinteraction"):
        assert model.camera_encoder.backbone.resnet.layer1[0].conv1.kernel_size == (3, 3)  # ResNet-18
        assert model.pillar_grid.grid_shape == (64, 64)
        assert sum(p.numel() for p in model.parameters()) < 15e6
