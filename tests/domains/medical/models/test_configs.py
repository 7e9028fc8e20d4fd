from pathlib import Path

import pytest
from mmengine.config import Config

from interlace.core.engine.registry import MODELS

ROOT = Path(__file__).resolve().parents[4]
CONFIGS = sorted((ROOT / "configs/medical").glob("*.py"))


def test_there_are_medical_configs():
    assert {p.name for p in CONFIGS} >= {
        "mgca_resnet50_mimic.py", "mgca_vitb16_mimic.py", "convirt_resnet50_mimic.py",
        "mgca_resnet18_synthetic_tiny.py"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_medical_config_loads(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == "interlace"
    assert cfg.model.type == ("CxrSegmenter" if path.name.startswith("unet_") else "MGCA")


def test_paper_settings():
    cfg = Config.fromfile(str(ROOT / "configs/medical/mgca_resnet50_mimic.py"))
    assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=2e-5, betas=(0.9, 0.999),
                                               weight_decay=0.05)
    assert cfg.train_cfg.max_epochs == 50 and cfg.train_dataloader.batch_size == 144
    assert cfg.param_scheduler[0].end == 20  # 40 % warm-up
    assert cfg.model.text_encoder.num_layers == 6 and cfg.model.text_encoder.max_length == 112
    assert cfg.model.prototype_loss.num_prototypes == 500
    vit = Config.fromfile(str(ROOT / "configs/medical/mgca_vitb16_mimic.py"))
    assert vit.model.image_encoder.type == "ViTImageEncoder"
    convirt = Config.fromfile(str(ROOT / "configs/medical/convirt_resnet50_mimic.py"))
    assert convirt.model.loss_weights == dict(instance=1.0, token=0.0, prototype=0.0)


def test_tiny_synthetic_config_builds_offline():
    cfg = Config.fromfile(str(ROOT / "configs/medical/mgca_resnet18_synthetic_tiny.py"))
    model = MODELS.build(cfg.model)
    assert model.text_encoder.tokenizer.tokenize("pneumothorax")[:2] == ["p", "##n"]
    assert model.prototype_loss.prototypes.weight.shape == (16, 32)


def test_tiny_synthetic_config_trains_with_the_runner(tmp_path):
    from mmengine.runner import Runner

    from interlace.domains.medical.data import make_synthetic_mimic

    make_synthetic_mimic(tmp_path / "mimic", studies=20)
    cfg = Config.fromfile(str(ROOT / "configs/medical/mgca_resnet18_synthetic_tiny.py"))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / "mimic")
    cfg.work_dir = str(tmp_path / "work")
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=True)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    # PrototypeFreezeHook ran: epoch 1 (0-based) unfroze the prototypes.
    assert runner.model.prototype_loss.epoch == 1 and not runner.model.prototype_loss.frozen
    assert (tmp_path / "work" / "epoch_2.pth").is_file()
