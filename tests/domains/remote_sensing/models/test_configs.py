"""The SkySense configs build their models (the paper one with small backbones)."""
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from interlace.core.engine.registry import HOOKS, MODELS

from ._paths import CONFIGS

_SMALL = dict(type="ConvSpatialEncoder", out_channels=16, stride=2)


def _build(cfg):
    with DefaultScope.overwrite_default_scope("interlace"):
        return MODELS.build(cfg)


def test_tiny_pretrain_config_builds_and_names_the_data():
    cfg = Config.fromfile(str(CONFIGS / "skysense_pretrain_synthetic_tiny.py"))
    model = _build(cfg.model)
    assert type(model).__name__ == "SkySensePretrainer" and model.encoder.embed_dims == 32
    assert cfg.train_dataloader.dataset.type == "SentinelTimeSeriesDataset"
    assert cfg.train_dataloader.dataset.data_root == "data/synthetic_s1s2"
    assert HOOKS.get(cfg.custom_hooks[0]["type"]) is not None


def test_tiny_segment_config_builds_and_runs_on_a_chip():
    cfg = Config.fromfile(str(CONFIGS / "skysense_segment_synthetic_tiny.py"))
    model = _build(cfg.model).eval()
    batch = dict(inputs={
        "s2": torch.randn(1, 6, 10, 32, 32), "s2_doy": torch.arange(1, 7).view(1, 6) * 30,
        "s2_valid": torch.ones(1, 6, 32, 32, dtype=torch.bool),
        "s1": torch.randn(1, 6, 2, 32, 32), "s1_doy": torch.arange(1, 7).view(1, 6) * 30,
        "s1_valid": torch.ones(1, 6, 32, 32, dtype=torch.bool),
        "modality_flags": torch.tensor([[True, True, False]]),
        "latlon": torch.tensor([[45.4, 9.3]])})
    samples = model.test_step(batch)
    assert samples[0].pred_sem_seg.shape == (32, 32)
    assert samples[0].seg_probs.shape[0] == 6


def test_paper_config_builds_with_small_backbones():
    cfg = Config.fromfile(str(CONFIGS / "skysense_paper.py"))
    encoder = cfg.model.encoder
    assert encoder.backbones.optical.hidden_size == 1024  # ViT-L as documented
    assert cfg.model.geo_prototypes.lat_bins * cfg.model.geo_prototypes.lon_bins == 4096
    encoder.backbones = dict(optical=dict(_SMALL, in_channels=10), sar=dict(_SMALL, in_channels=2))
    encoder.high_res_backbone = dict(_SMALL, in_channels=3)
    encoder.update(embed_dims=16, num_heads=2, num_layers=1, grid_stride=2)
    cfg.model.update(projection_dims=16)
    cfg.model.geo_prototypes.update(lat_bins=2, lon_bins=2)
    model = _build(cfg.model)
    assert model.geo_prototypes.bank.shape == (4, 100, 16)
    assert "high_res" in model.projectors
