"""Train a model from an Interlace config with mmengine (flags as in mmdet3d's train.py).

Examples:
  python tools/train.py configs/driving/transfusion_l_nus.py
  python tools/train.py CONFIG --work-dir work_dirs/run1 --cfg-options train_cfg.max_epochs=2
  python tools/train.py CONFIG --resume                  # latest checkpoint in the work dir
  python tools/train.py CONFIG --resume work_dirs/run1/epoch_3.pth
  torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch
"""
import argparse

from interlace.core.engine.cli import (add_run_arguments, apply_resume, build_runner,
                                       enable_amp, load_config, parse_run_arguments,
                                       setup_distributed, teardown_distributed)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a model from a config.", epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="where logs and checkpoints go "
                        "(default: the config's work_dir, else work_dirs/<config name>)")
    parser.add_argument("--amp", action="store_true",
                        help="automatic mixed precision (needs a CUDA device)")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from CKPT, or with no value from the latest "
                             "checkpoint in the work dir")
    add_run_arguments(parser, "training")
    return parse_run_arguments(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    setup_distributed(cfg, args.launcher)
    if args.amp:
        enable_amp(cfg)
    apply_resume(cfg, args.resume)
    runner = build_runner(cfg)
    runner.train()
    teardown_distributed()
    return 0
