"""Run a trained model over input files, one output file per input (batch inference).

The config's ``infer_cfg = dict(reader=dict(type=...), writer=dict(type=...))`` names the
reader and writer (registered in INFERENCE_IO). Outputs that already exist are skipped,
so re-running a killed job resumes it; every input is recorded in OUT/manifest.jsonl.
Several runs may share one --out folder (two users, a re-launch while the first still
runs): each output is claimed with a hidden OUT/.NAME.claim file first, and an output
claimed by a live process is left to it; claims of dead processes are taken over, and
claims older than --claim-timeout seconds too. SIGTERM or Ctrl-C stop the run cleanly
(no temporary file left, claims released, exit code 143 / 130); a full, read-only or
removed output folder stops it with exit code 3. Run the same command again to finish.

INPUTS may be files, directories (their files, sorted; hidden files are left out), glob
patterns (quote them: "data/**/*.npy") or @list.txt (one path per line, relative to the
current directory; blank lines and lines starting with # are ignored).

Examples:
  python tools/infer.py tests/fixtures/toy_config.py work_dirs/toy/epoch_2.pth data/in --out data/out
  python tools/infer.py CONFIG CKPT "scans/*.npy" @more.txt --out preds --manifest run2.jsonl
  python tools/infer.py CONFIG CKPT data/in --out preds --cfg-options infer_cfg.writer.indent=2
  python tools/infer.py configs/remote_sensing/skysense_segment_synthetic_tiny.py CKPT \
      data/synthetic_s1s2/labels --out maps --drop sar      # one COG per tile, optical only
  python tools/infer.py configs/driving/deepinteraction_r18_synthetic_tiny.py CKPT \
      @val_tokens.txt --out preds --drop camera    # nuScenes sample tokens -> <token>.json
  torchrun --nproc_per_node 2 tools/infer.py CONFIG CKPT data/in --out preds --launcher pytorch
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp

from interlace.core.engine.cli import (ToolError, add_drop_arguments, add_run_arguments,
                                       apply_drop, load_config, parse_run_arguments,
                                       setup_distributed, teardown_distributed)

_GLOB_CHARS = set("*?[")
_MAX_FAILURES_SHOWN = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Batch inference: run a checkpoint over input files.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file with `model` and `infer_cfg`")
    parser.add_argument("checkpoint", help="checkpoint or state-dict file (loaded with "
                        "torch.load(weights_only=True))")
    parser.add_argument("inputs", nargs="+", metavar="INPUTS",
                        help="files, directories, glob patterns or @list.txt")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--manifest", default="manifest.jsonl", metavar="NAME",
                        help="manifest file name inside --out (default: manifest.jsonl)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--claim-timeout", type=float, default=3600.0, metavar="S",
                        help="take over another run's claim on an output after S seconds "
                        "even if its process may be alive (it runs on another host, or "
                        "hangs); claims of dead processes on this host are taken at once "
                        "(default: 3600)")
    add_drop_arguments(parser, "infer")
    add_run_arguments(parser, "inference (each process takes every world_size-th input)")
    return parse_run_arguments(parser, argv)


def _list_file(spec: str) -> list[str]:
    path = spec[1:]
    if not osp.isfile(path):
        raise FileNotFoundError(f"input list not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = (line.strip() for line in f)
        return [line for line in lines if line and not line.startswith("#")]


def expand_inputs(specs: list[str]) -> list[str]:
    """Files, directories, glob patterns and ``@list.txt`` → input files, in the order
    given (directories and globs sorted), without duplicates.

    Raises:
        ToolError: a path that does not exist, or a pattern or directory with no files.
    """
    found: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            found.extend(_list_file(spec))  # missing listed files fail per input
        elif osp.isdir(spec):
            files = sorted(osp.join(spec, name) for name in os.listdir(spec)
                           if not name.startswith(".") and osp.isfile(osp.join(spec, name)))
            if not files:
                raise ToolError(f"input directory has no files: {spec}")
            found.extend(files)
        elif osp.exists(spec):
            found.append(spec)
        elif _GLOB_CHARS & set(spec):
            files = sorted(p for p in glob.glob(spec, recursive=True) if osp.isfile(p))
            if not files:
                raise ToolError(f"input pattern matched no files: {spec}")
            found.extend(files)
        else:
            raise ToolError(f"input not found: {spec}")
    return list(dict.fromkeys(found))


def build_model(cfg, checkpoint: str, device: str):
    """Build ``cfg.model`` in the config's scope and load `checkpoint` strictly."""
    from mmengine.registry import init_default_scope

    from interlace.core.engine.checkpoint import load_weights
    from interlace.core.engine.registry import MODELS

    init_default_scope(cfg.get("default_scope", "interlace"))
    if "model" not in cfg:
        raise ToolError(f"config {cfg.filename} has no `model`")
    try:
        model = MODELS.build(cfg.model)
    except KeyError as error:  # e.g. a --drop name the model does not know
        dropped = cfg.model.get("drop_modalities")
        if dropped and "modalit" in str(error):
            reason = error.args[0] if error.args else error
            raise ToolError(f"--drop {' '.join(dropped)}: {reason}") from None
        raise
    load_weights(model, checkpoint, strict=True)
    return model.to(device)


def build_io(cfg):
    """Reader and writer from ``cfg.infer_cfg``."""
    import interlace.core.engine.batch_inference  # noqa: F401  registers the generic IO
    from interlace.core.engine.registry import INFERENCE_IO

    infer_cfg = cfg.get("infer_cfg")
    if not infer_cfg or "reader" not in infer_cfg or "writer" not in infer_cfg:
        raise ToolError(f"config {cfg.filename} has no `infer_cfg = dict(reader=dict(type=...), "
                        "writer=dict(type=...))`; add one naming an INFERENCE_IO reader and writer")
    return INFERENCE_IO.build(infer_cfg["reader"]), INFERENCE_IO.build(infer_cfg["writer"])


def print_summary(summary, n_inputs: int, out_dir: str) -> None:
    claimed = f"  claimed by another run: {summary.claimed}" if summary.claimed else ""
    print(f"inputs: {n_inputs}  written: {summary.written}  skipped: {summary.skipped}  "
          f"failed: {summary.failed}{claimed}")
    if summary.stopped:
        print(f"stopped early: {summary.stopped}; {summary.not_run} inputs not run "
              "(run the same command again to finish)")
    print(f"output dir: {osp.abspath(out_dir)}")
    print(f"manifest: {summary.manifest_path}")
    print(f"seconds: {summary.elapsed_s:.2f}")
    if summary.failures:
        print("failed inputs:")
        for path, error in summary.failures[:_MAX_FAILURES_SHOWN]:
            print(f"  {path}: {error}")
        if len(summary.failures) > _MAX_FAILURES_SHOWN:
            print(f"  ... and {len(summary.failures) - _MAX_FAILURES_SHOWN} more (see the manifest)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, launcher=args.launcher)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    inputs = expand_inputs(args.inputs)
    apply_drop(cfg, args.drop, args.drop_views)
    # A writer that records which inputs were used (e.g. the nuScenes submission `meta`)
    # must not claim a dropped one.
    modality = cfg.get("infer_cfg", {}).get("writer", {}).get("modality")
    if args.drop and isinstance(modality, dict):
        for name in args.drop:
            if f"use_{name}" in modality:
                modality[f"use_{name}"] = False

    import torch
    import torch.distributed as torch_dist
    from mmengine.dist import all_gather_object, get_dist_info, init_dist

    from interlace.core.engine.batch_inference import (BatchInferenceEngine, InferenceSummary,
                                                       OutputFolderError, OutputNameConflict)

    if args.launcher != "none":
        setup_distributed(cfg, args.launcher)  # gloo without CUDA
        if not torch_dist.is_initialized():
            backend = cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend", "nccl")
            init_dist(args.launcher, backend=backend)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(cfg, args.checkpoint, device)
    reader, writer = build_io(cfg)
    engine = BatchInferenceEngine(model, reader, writer, args.out, manifest_name=args.manifest,
                                  show_progress=not args.no_progress,
                                  claim_stale_after_s=args.claim_timeout)
    try:
        summary = engine.run(inputs)
    except (OutputNameConflict, OutputFolderError) as error:
        raise ToolError(str(error)) from None
    rank, world_size = get_dist_info()
    if world_size > 1:
        summary = InferenceSummary.merge(all_gather_object(summary))
    if rank == 0:
        if args.drop:
            print(f"dropped modalities: {', '.join(cfg.model.drop_modalities)}")
        print_summary(summary, len(inputs), args.out)
    teardown_distributed()
    if summary.interrupted:
        return 128 + summary.interrupted  # the shell's code for death by that signal
    if summary.stopped:
        return 3
    return 1 if summary.total and summary.failed == summary.total else 0
