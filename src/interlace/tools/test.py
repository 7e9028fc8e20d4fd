"""Evaluate a checkpoint on a config's test set with mmengine (flags as in mmdet3d's test.py).

Examples:
  python tools/test.py CONFIG work_dirs/run1/epoch_6.pth
  python tools/test.py CONFIG CKPT --out work_dirs/run1/predictions.pkl
  python tools/test.py CONFIG CKPT --format-only --cfg-options test_evaluator.jsonfile_prefix=work_dirs/sub/
  python tools/test.py CONFIG CKPT --show-dir work_dirs/run1/vis
  python tools/test.py configs/remote_sensing/skysense_segment_synthetic_tiny.py CKPT --drop sar
  python tools/test.py configs/driving/deepinteraction_r18_synthetic_tiny.py CKPT --drop-views 2
  torchrun --nproc_per_node 2 tools/test.py CONFIG CKPT --launcher pytorch
"""
import argparse
import os.path as osp

from mmengine.config import Config

from interlace.core.engine.cli import (ToolError, add_drop_arguments, add_run_arguments,
                                       apply_drop, build_runner, load_config,
                                       model_init_params, parse_run_arguments,
                                       setup_distributed, teardown_distributed)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Test (and evaluate) a checkpoint.", epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    parser.add_argument("--work-dir", help="where the evaluation logs go")
    parser.add_argument("--out", help="dump the raw predictions to this pickle file")
    parser.add_argument("--format-only", action="store_true",
                        help="only write the results in the official format (e.g. for a "
                             "test-server submission); compute no scores")
    parser.add_argument("--show-dir", help="write visualisations of the predictions here")
    add_drop_arguments(parser, "score the model")
    add_run_arguments(parser, "testing")
    return parse_run_arguments(parser, argv)


def set_format_only(cfg: Config) -> None:
    """Ask every test metric to write its official-format output and skip scoring."""
    from interlace.core.engine.registry import METRICS, register_all_modules

    register_all_modules()
    evaluators = cfg.test_evaluator
    metrics = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
    for metric in metrics:
        metric_cls = METRICS.get(metric["type"])
        if metric_cls is None or "format_only" not in model_init_params(metric_cls):
            raise ToolError(f"--format-only: metric {metric['type']} cannot write results "
                             "without evaluating (it has no `format_only` option)")
        metric["format_only"] = True


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Turn on the config's visualization hook and point it at `show_dir`."""
    hook = cfg.default_hooks.get("visualization") if "default_hooks" in cfg else None
    if hook is None:
        raise ToolError("--show-dir: the config has no `default_hooks.visualization`, so "
                         "this model cannot draw its predictions")
    hook["draw"] = True
    hook["test_out_dir"] = osp.abspath(show_dir)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    setup_distributed(cfg, args.launcher)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.format_only:
        set_format_only(cfg)
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    apply_drop(cfg, args.drop, args.drop_views)
    try:
        runner = build_runner(cfg)
    except KeyError as error:  # e.g. a --drop name the model does not know
        if args.drop and "modalit" in str(error):
            raise ToolError(f"--drop {' '.join(args.drop)}: "
                            f"{error.args[0] if error.args else error}") from None
        raise
    if args.out:
        if not args.out.endswith((".pkl", ".pickle")):
            raise ToolError("--out must be a .pkl or .pickle file")
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    teardown_distributed()
    if args.drop:
        print(f"dropped modalities: {', '.join(cfg.model.drop_modalities)}")
    if metrics:
        print("metrics: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in metrics.items()))
    return 0
