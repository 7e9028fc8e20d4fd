"""The tiny configs train through mmengine's Runner on the synthetic S1/S2 tiles (slow)."""
import pytest
import torch
from mmengine.config import Config

from ._paths import CONFIGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from interlace.domains.remote_sensing.data.synthetic import make_synthetic_s1s2

    root = tmp_path_factory.mktemp("synthetic_s1s2")
    make_synthetic_s1s2(str(root), tiles=3, size=64, dates=6)
    return str(root)


def _run(config, root, work_dir, overrides=()):
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(CONFIGS / config))
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_epochs = 1
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if loader in cfg:
            cfg[loader].dataset.data_root = root
    for key, value in overrides:
        cfg[key] = value
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_pretrain_config_runs_an_epoch_with_the_ema_hook(synthetic_root, tmp_path):
    runner = _run("skysense_pretrain_synthetic_tiny.py", synthetic_root, tmp_path)
    hook = next(h for h in runner.hooks if type(h).__name__ == "EMATeacherHook")
    assert hook.last_momentum == pytest.approx(0.99)
    model = runner.model
    assert not torch.equal(model.encoder.fusion.extra_token, model.teacher_encoder.fusion.extra_token)


def test_segment_config_trains_and_validates(synthetic_root, tmp_path):
    runner = _run("skysense_segment_synthetic_tiny.py", synthetic_root, tmp_path)
    metrics = runner.val_loop.run()
    assert 0.0 <= metrics["seg/mIoU"] <= 1.0
