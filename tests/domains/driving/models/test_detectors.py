"""The driving detectors on a real pipeline batch of the generated database: losses are
finite and train the streams they should, predictions fill ``pred_instances_3d``, missing
sensors change exactly what they should, and a short training run lowers the loss."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from interlace.core.engine.registry import DATASETS, MODELS, register_all_modules
from interlace.domains.driving.models import detectors  # noqa: F401  registers the detectors
from interlace.domains.driving.models.detectors import (DeepInteractionDetector,
                                                        LidarOnlyDetector, drop_camera_views,
                                                        hide_missing_views)
from tests.fixtures.tools import ROOT

CONFIGS = ROOT / "configs" / "driving"
LIDAR_TINY = CONFIGS / "transfusion_l_synthetic_tiny.py"
FUSION_TINY = CONFIGS / "deepinteraction_r18_synthetic_tiny.py"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A generated v1.0-mini database (2 scenes x 2 samples: one train, one val scene) with
    info files (3 sweeps) and the GT-paste database."""
    from interlace.domains.driving.data.gt_paste import create_groundtruth_database
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    register_all_modules()
    init_default_scope("interlace")
    root = tmp_path_factory.mktemp("nuscenes_tiny")
    make_synthetic_nuscenes(root, scenes=2, samples_per_scene=2, version="v1.0-mini",
                            verbose=False)
    create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=3, progress=False)
    create_groundtruth_database(root / "nuscenes_infos_train.pkl", root, root, max_sweeps=3)
    return root


def tiny_config(path, db) -> Config:
    """The tiny config with every data root pointed at the generated database."""
    cfg = Config.fromfile(str(path))
    train = cfg.train_dataloader.dataset.dataset
    train.data_root = str(db)
    for transform in train.pipeline:
        if transform["type"] == "ObjectSample":
            transform["db_sampler"]["data_root"] = str(db)
    cfg.val_dataloader.dataset.data_root = str(db)
    return cfg


def pipeline_batch(cfg: Config, indices=(0,), test_mode: bool = False) -> dict:
    """The config's real train (or test) pipeline on samples of the train split."""
    np.random.seed(0)
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset.dataset)
    if test_mode:
        dataset_cfg.pipeline = cfg.val_dataloader.dataset.pipeline
    dataset_cfg.serialize_data = False
    dataset = DATASETS.build(dataset_cfg)
    return pseudo_collate([dataset[i] for i in indices])


def build(cfg: Config, **overrides):
    torch.manual_seed(0)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(overrides)
    return MODELS.build(model_cfg)


@pytest.fixture(scope="module")
def lidar_cfg(db):
    return tiny_config(LIDAR_TINY, db)


@pytest.fixture(scope="module")
def fusion_cfg(db):
    return tiny_config(FUSION_TINY, db)


@pytest.fixture(scope="module")
def fusion_batch(fusion_cfg):
    return pipeline_batch(fusion_cfg)


def losses_and_backward(model, batch) -> dict:
    model.train()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model(**data, mode="loss")
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    return losses


def grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def predict(model, batch, **drop):
    for name, value in drop.items():
        setattr(model, name, value)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        return model(**data, mode="predict")


# --- training step ----------------------------------------------------------------------
def test_lidar_only_loss_is_finite_and_trains_the_lidar_stream_and_head(lidar_cfg):
    batch = pipeline_batch(lidar_cfg)
    assert "img" not in batch["inputs"]  # the LiDAR-only pipeline loads no images
    model = build(lidar_cfg)
    assert isinstance(model, LidarOnlyDetector)
    losses = losses_and_backward(model, batch)
    assert {"layer0_loss_cls", "layer0_loss_bbox", "loss_heatmap"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert grad_norm(model.lidar_encoder.middle_encoder) > 0
    assert grad_norm(model.lidar_encoder.neck) > 0
    assert grad_norm(model.bbox_head.decoder) > 0


def test_deep_interaction_loss_trains_both_streams_and_the_encoder(fusion_cfg, fusion_batch):
    model = build(fusion_cfg)
    assert isinstance(model, DeepInteractionDetector)
    losses = losses_and_backward(model, fusion_batch)
    # One LiDAR layer, one camera layer, one LiDAR layer; both heatmaps (DI++ average).
    expected = {f"layer{i}_loss_{k}" for i in range(3) for k in ("cls", "bbox")}
    assert expected | {"loss_heatmap", "loss_heatmap_lidar_only"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert grad_norm(model.lidar_encoder.middle_encoder) > 0
    assert grad_norm(model.camera_encoder.backbone) > 0, "no gradient reached the image backbone"
    layer = model.interaction_encoder.layers[0]
    assert grad_norm(layer.branch_a.cross) > 0, "no image-to-LiDAR gradient"
    assert grad_norm(layer.branch_b.cross) > 0, "no LiDAR-to-image gradient"
    assert grad_norm(model.bbox_head.lidar_only_heatmap_conv) > 0
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient (DDP would need find_unused): {missing[:5]}"


# --- inference --------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["lidar", "fusion"])
def test_predict_fills_pred_instances_3d_with_boxes(which, lidar_cfg, fusion_cfg):
    cfg = lidar_cfg if which == "lidar" else fusion_cfg
    batch = pipeline_batch(cfg, indices=(0, 1), test_mode=True)
    model = build(cfg)
    samples = predict(model, batch)
    assert len(samples) == 2
    for sample in samples:
        pred = sample.pred_instances_3d
        n = pred.bboxes_3d.shape[0]
        assert 0 < n <= 64 and pred.bboxes_3d.shape == (n, 9)
        assert pred.scores_3d.shape == (n,) and pred.labels_3d.shape == (n,)
        assert torch.isfinite(pred.bboxes_3d).all()
        assert bool((pred.scores_3d[:-1] >= pred.scores_3d[1:]).all())
        assert int(pred.labels_3d.min()) >= 0 and int(pred.labels_3d.max()) < 10
        assert bool((pred.bboxes_3d[:, 3:6] > 0).all())
        assert sample.metainfo["token"]  # metainfo kept for NuScenesMetric


def test_tensor_mode_returns_the_heatmaps_and_last_layer(fusion_cfg, fusion_batch):
    model = build(fusion_cfg).eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(fusion_batch), False)
        out = model(**data, mode="tensor")
    assert out["dense_heatmaps"]["bev"].shape == (1, 10, 64, 64)
    assert out["dense_heatmaps"]["lidar_only"].shape == (1, 10, 64, 64)
    assert out["predictions"]["heatmap"].shape == (1, 64, 10)


# --- missing sensors ----------------------------------------------------------------------
def _boxes(samples):
    return torch.cat([s.pred_instances_3d.bboxes_3d for s in samples])


def _with_images(batch, fill):
    out = copy.deepcopy(batch)
    out["inputs"]["img"] = [fill(img) for img in out["inputs"]["img"]]
    return out


def test_dropped_cameras_make_the_images_irrelevant(fusion_cfg, fusion_batch):
    model = build(fusion_cfg, drop_modalities=("camera",))
    noisy = _with_images(fusion_batch, lambda img: torch.randn_like(img) * 3)
    first, second = _boxes(predict(model, fusion_batch)), _boxes(predict(model, noisy))
    assert first.shape[0] > 0 and torch.equal(first, second)
    # ...while with cameras the same change of images moves the boxes.
    model.drop_modalities = ()
    assert not torch.equal(_boxes(predict(model, fusion_batch)), _boxes(predict(model, noisy)))


def test_dropped_lidar_runs_on_zero_points_and_ignores_them(fusion_cfg, fusion_batch):
    model = build(fusion_cfg, drop_modalities=("lidar",))
    moved = copy.deepcopy(fusion_batch)
    moved["inputs"]["points"] = [p[: p.shape[0] // 2] for p in moved["inputs"]["points"]]
    first, second = predict(model, fusion_batch), predict(model, moved)
    assert torch.isfinite(_boxes(first)).all() and _boxes(first).shape[0] > 0
    assert torch.equal(_boxes(first), _boxes(second))


def test_lidar_only_detector_accepts_both_drop_names(lidar_cfg):
    batch = pipeline_batch(lidar_cfg, test_mode=True)
    model = build(lidar_cfg)
    full = _boxes(predict(model, batch))
    assert torch.equal(full, _boxes(predict(model, batch, drop_modalities=("camera",))))
    empty = _boxes(predict(model, batch, drop_modalities=("lidar",)))
    assert torch.isfinite(empty).all()


def test_unknown_or_total_drop_is_refused(fusion_cfg):
    with pytest.raises(KeyError, match="modalities"):
        build(fusion_cfg, drop_modalities=("radar",))
    with pytest.raises(ValueError, match="both"):
        build(fusion_cfg, drop_modalities=("lidar", "camera"))


def test_dropped_views_are_not_seen(fusion_cfg, fusion_batch):
    model = build(fusion_cfg, drop_views=[0, 1, 2])

    def noise_in(views):
        def fill(img):
            img = img.clone()
            img[list(views)] = torch.randn_like(img[list(views)]) * 3
            return img
        return fill

    reference = _boxes(predict(model, fusion_batch))
    assert torch.equal(reference, _boxes(predict(model, _with_images(fusion_batch, noise_in([0, 1, 2])))))
    assert not torch.equal(reference, _boxes(predict(model, _with_images(fusion_batch, noise_in([3, 4, 5])))))


def test_all_views_missing_equals_dropping_the_cameras(fusion_cfg, fusion_batch):
    model = build(fusion_cfg)
    none_seen = _boxes(predict(model, fusion_batch, drop_views=6))
    dropped = _boxes(predict(model, fusion_batch, drop_views=0, drop_modalities=("camera",)))
    torch.testing.assert_close(none_seen, dropped)


def test_drop_views_marks_k_random_views_per_sample_reproducibly():
    flags = torch.zeros(3, 6, dtype=torch.bool)
    flags[0, 5] = True
    out = drop_camera_views(flags, 2, seed=1)
    assert out[0, 5] and bool((out.sum(1) >= 2).all()) and bool((out.sum(1) <= 3).all())
    assert torch.equal(out, drop_camera_views(flags, 2, seed=1))
    with pytest.raises(ValueError):
        drop_camera_views(flags, 7)


def test_hidden_views_project_no_point_and_lift_no_pixel_into_the_bev():
    from interlace.core.interaction import ProjectionCorrespondence, StreamFeatures
    from interlace.benchmarks.interaction_scene import make_scene

    scene = make_scene(num_pillars=300, bev_size=20, channels=8, image_scale=0.25)
    corr = scene.correspondence
    missing = torch.tensor([[True, False, False, False, False, False]])
    hidden = ProjectionCorrespondence(hide_missing_views(corr.lidar2img, missing),
                                      corr.image_shape, corr.bev_range,
                                      pillar_points=corr.pillar_points)
    a = StreamFeatures(levels=[scene.a.levels[0][:, :8, :20, :20]])
    b = StreamFeatures(levels=[scene.b.levels[0][:, :8]], num_views=6)
    pairs = hidden.gather_b_for_a(a, b)
    view = (pairs.key_position[:, 3] * 6).round().long()
    assert pairs.num_pairs > 0 and not bool((view == 0).any())
    assert bool((corr.gather_b_for_a(a, b).key_position[:, 3] == 0).any())
    assert not bool(hidden.ray_layout(a, b).valid[0, 0].any())
    assert bool(hidden.ray_layout(a, b).valid[0, 1:].any())


# --- a short training run ----------------------------------------------------------------
def overfit_config(cfg: Config, work_dir, iterations: int) -> Config:
    """The tiny config trained on one train sample without random augmentation, for
    `iterations` steps of batch 1, no validation, no checkpoint."""
    cfg = copy.deepcopy(cfg)
    dataset = cfg.train_dataloader.dataset.dataset
    random_steps = ("ObjectSample", "GlobalRotScaleTrans", "RandomFlip3D", "PointShuffle")
    pipeline = [t for t in dataset.pipeline if t["type"] not in random_steps]
    for transform in pipeline:
        if transform["type"] == "ImageResizeCrop":
            transform.update(is_train=False, resize_lim=(0.44, 0.44))
    dataset.update(pipeline=pipeline, indices=[0], serialize_data=False)
    cfg.train_dataloader = dict(
        batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(type="RepeatDataset", times=iterations, dataset=dataset))
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=10)
    cfg.param_scheduler = []
    cfg.optim_wrapper.optimizer.lr = 2e-3
    cfg.optim_wrapper.clip_grad = None
    for key in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg",
                "test_evaluator"):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0)
    return cfg


def train_losses(cfg: Config) -> list[float]:
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    runner.train()
    return [float(v) for v in runner.message_hub.get_scalar("train/loss").data[0]]


def _falls(losses: list[float]) -> bool:
    return np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])


def test_lidar_only_training_run_lowers_the_loss(lidar_cfg, tmp_path):
    losses = train_losses(overfit_config(lidar_cfg, tmp_path, iterations=8))
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert _falls(losses), losses


def test_deep_interaction_training_run_lowers_the_loss(fusion_cfg, tmp_path):
    losses = train_losses(overfit_config(fusion_cfg, tmp_path, iterations=6))
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert _falls(losses), losses


@pytest.mark.slow
def test_train_tool_runs_the_tiny_fusion_config_and_the_loss_falls(db, tmp_path):
    """tools/train.py on the tiny DeepInteraction config as shipped (CBGS, augmentation,
    cosine LR), on the 2 train samples, 2 epochs of batch 2, then tools/test.py-style
    validation with NuScenesMetric on the val scene."""
    import json

    from interlace.tools import train

    config = tmp_path / "di_tiny_local.py"
    config.write_text(
        f"_base_ = ['{FUSION_TINY}']\n"
        f"train_dataloader = dict(dataset=dict(dataset=dict(data_root='{db}')))\n"
        f"val_dataloader = dict(dataset=dict(data_root='{db}'))\n"
        f"test_dataloader = val_dataloader\n"
        f"val_evaluator = dict(data_root='{db}', ann_file='{db}/nuscenes_infos_val.pkl')\n"
        f"test_evaluator = val_evaluator\n"
        "train_cfg = dict(max_epochs=2, val_interval=2)\n"
        "param_scheduler = []\n"
        "default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))\n")
    assert train.main([str(config), "--work-dir", str(tmp_path / "work")]) == 0
    scalars = sorted((tmp_path / "work").glob("*/vis_data/scalars.json"))[-1]
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    print("training losses:", [round(v, 3) for v in losses])
    assert len(losses) >= 6 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert any("nuscenes/NDS" in r for r in records)
    assert (tmp_path / "work" / "epoch_2.pth").exists()


@pytest.mark.slow
def test_paper_size_deep_interaction_pp_predicts_200_boxes(db):
    """DeepInteraction++ Swin-T at the published sizes (1440 x 1440 voxels, 6 x 448 x 800
    images, 200 queries) on a real pipeline batch: about 30 s on one CPU thread."""
    cfg = tiny_config(CONFIGS / "deepinteraction_pp_swint_nus.py", db)
    cfg.train_dataloader.dataset.dataset.version = "v1.0-mini"
    batch = pipeline_batch(cfg, test_mode=True)
    assert tuple(batch["inputs"]["img"][0].shape) == (6, 3, 448, 800)
    pred = predict(build(cfg), batch)[0].pred_instances_3d
    assert pred.bboxes_3d.shape == (200, 9) and torch.isfinite(pred.bboxes_3d).all()
