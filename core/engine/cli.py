"""What `tools/train.py`, `tools/test.py` and `tools/infer.py` share: loading a config
with the mmdet3d-style overrides, starting torch.distributed (also on CPU-only PyTorch),
and turning known errors into one readable line instead of a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import sys
from typing import Callable, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import get_dist_info
from mmengine.logging import print_log

from .registry import SCOPE, UnknownTypeError, explain_unknown_type

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
# Seconds a collective (all-reduce, barrier) waits for the other ranks before failing, so
# a dead rank ends the others with an error instead of a hang; `env_cfg.dist_cfg.timeout`
# overrides it (mmengine's key, also used on the CUDA path).
DEFAULT_DIST_TIMEOUT_S = 1800


class ToolError(ValueError):
    """A command-line request that cannot be carried out; `run_cli` prints it in one line."""


def add_run_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The options every tool shares: ``--cfg-options``, ``--launcher``, ``--local-rank``."""
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. train_cfg.max_epochs=2 "
                             "test_dataloader.batch_size=1")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none",
                        help=f"job launcher for multi-process {what}")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def parse_run_arguments(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` for launchers (torch.distributed.launch) that pass
    it as an argument instead of an environment variable."""
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = "none") -> Config:
    """Load `path`, apply ``--cfg-options`` and pick the work dir as mmdet3d does:
    command line, then the config's ``work_dir``, then ``work_dirs/<config name>``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.setdefault("default_scope", SCOPE)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(path))[0])
    return cfg


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Start torch.distributed for `launcher` before the Runner does.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which fails on
    a CPU-only PyTorch, and its DDP wrapper pins ``device_ids=[LOCAL_RANK]``, which DDP
    rejects for CPU modules. Without CUDA we therefore start a gloo process group here
    (the Runner skips its own init when one exists) and wrap with ``device_ids=None``.
    """
    if launcher == "none":
        return
    os.environ.setdefault("LOCAL_RANK", "0")
    dist_cfg = dict(cfg.get("env_cfg", {}).get("dist_cfg", {}))
    dist_cfg.setdefault("timeout", DEFAULT_DIST_TIMEOUT_S)  # seconds, mmengine's init_dist
    cfg.setdefault("env_cfg", {})["dist_cfg"] = dist_cfg
    if torch.cuda.is_available():
        return  # mmengine's own path works with CUDA (and passes the timeout on)
    import datetime

    import torch.distributed as dist

    dist_cfg["backend"] = "gloo"
    if not dist.is_initialized():
        if launcher == "pytorch":
            dist.init_process_group(backend="gloo",
                                    timeout=datetime.timedelta(seconds=dist_cfg["timeout"]))
        else:
            from mmengine.dist import init_dist
            # slurm / mpi read their own variables; only the backend differs.
            init_dist(launcher, backend="gloo", timeout=dist_cfg["timeout"])
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    wrapper.setdefault("device_ids", None)
    wrapper.setdefault("broadcast_buffers", False)
    wrapper.setdefault("find_unused_parameters", cfg.get("find_unused_parameters", False))
    cfg.model_wrapper_cfg = wrapper


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to mixed precision, as ``--amp`` does in mmdet3d.

    mmengine's ``AmpOptimWrapper`` refuses to start without an accelerator, so on a
    CPU-only machine the flag is reported and ignored rather than crashing the run.
    """
    if not torch.cuda.is_available():
        print_log("--amp ignored: no CUDA device, training in float32.", logger="current",
                  level=logging.WARNING)
        return
    optim_wrapper = cfg.optim_wrapper.get("type", "OptimWrapper")
    if optim_wrapper == "AmpOptimWrapper":
        print_log("AMP training is already enabled in your config.", logger="current",
                  level=logging.WARNING)
        return
    if optim_wrapper != "OptimWrapper":
        raise ToolError(f"--amp needs optim_wrapper.type 'OptimWrapper', got '{optim_wrapper}'")
    cfg.optim_wrapper.type = "AmpOptimWrapper"
    cfg.optim_wrapper.loss_scale = "dynamic"


def apply_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume`` alone resumes from the work dir's latest checkpoint; ``--resume CKPT``
    from that file (mmdet3d semantics).

    Both check the file first: with no path a truncated or corrupt latest checkpoint is
    logged and passed over for the newest valid one (``resumable_checkpoint``); a named
    file that does not load is refused with its reason (:class:`CheckpointError`)."""
    from .checkpoint import CheckpointError
    from .checkpoint_files import checkpoint_problem, resumable_checkpoint

    if resume == "auto":
        cfg.resume = True
        # None (no checkpoint yet): mmengine finds none either and starts from scratch
        cfg.load_from = resumable_checkpoint(cfg.work_dir)
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f"--resume: checkpoint not found: {resume}")
        problem = checkpoint_problem(resume)
        if problem is not None:
            raise CheckpointError(f"--resume {resume}: cannot resume from it: {problem}")
        cfg.resume = True
        cfg.load_from = resume


def add_default_hooks(cfg: Config) -> None:
    """What every training run gets unless its config chooses otherwise:
    ``PreemptionHook`` (checkpoint and exit on SIGTERM / SIGUSR1), ``NonFiniteLossHook``
    and, for a plain ``OptimWrapper``, ``NonFiniteGuardOptimWrapper`` (skip NaN / inf
    steps). See ``core/engine/hooks/preemption.py`` and ``non_finite.py``."""
    hooks = list(cfg.get("custom_hooks") or [])
    present = {h.get("type") if isinstance(h, dict) else type(h).__name__ for h in hooks}
    for name in ("PreemptionHook", "NonFiniteLossHook"):
        if name not in present:
            hooks.append(dict(type=name))
    cfg.custom_hooks = hooks
    optim_wrapper = cfg.get("optim_wrapper")
    if isinstance(optim_wrapper, dict) and optim_wrapper.get("type", "OptimWrapper") in (
            "OptimWrapper", "mmengine.OptimWrapper"):
        optim_wrapper["type"] = "NonFiniteGuardOptimWrapper"


def build_runner(cfg: Config):
    """Build the mmengine Runner (or the config's ``runner_type``)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .checkpoint import install_safe_checkpoint_loader
    from .checkpoint_files import install_atomic_checkpoint_saver

    # Resume and `load_from` go through torch.load(weights_only=True) with the few
    # globals mmengine checkpoints need (see checkpoint.py); saves are atomic.
    install_safe_checkpoint_loader()
    install_atomic_checkpoint_saver()
    add_default_hooks(cfg)
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    # mmengine logs deprecations of its own API on every run (CheckpointHook's FileClient);
    # a tool's output keeps only what concerns the user.
    from interlace.warning_filters import KnownLogMessageFilter
    runner.logger.addFilter(KnownLogMessageFilter())
    return runner


def is_main_process() -> bool:
    return get_dist_info()[0] == 0


# What gloo / NCCL / the c10d store put in the errors they raise when a peer is gone.
_DIST_FAILURE_MARKERS = ("gloo/", "NCCL", "Connection reset by peer", "Connection closed by peer",
                         "Timed out", "ProcessGroup", "c10d")


def distributed_failure(error: BaseException) -> Optional[str]:
    """One line for an error that means "lost the other ranks" (a rank died or hangs and
    a collective failed or ran past ``env_cfg.dist_cfg.timeout``), else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    if not isinstance(error, getattr(dist, "DistError", ())) and not (
            isinstance(error, RuntimeError) and any(m in str(error) for m in _DIST_FAILURE_MARKERS)):
        return None
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"rank {dist.get_rank()} of {dist.get_world_size()}: lost contact with the other "
            "ranks (one died, was killed or hangs, or the network failed; a collective waits "
            f"at most env_cfg.dist_cfg.timeout seconds): {reason}. Check the other ranks' logs.")


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a tool's ``main`` and exit with its code. Known user errors (unknown config
    type, missing file, bad checkpoint) print one line to stderr and exit 2; losing the
    other ranks of a multi-process run prints one line and exits 1 at once (the process
    group cannot be shut down cleanly without them). Set ``INTERLACE_DEBUG=1`` to get the
    traceback instead."""
    from .checkpoint import CheckpointError

    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (KeyError, FileNotFoundError, CheckpointError, ToolError) as error:
        if os.environ.get("INTERLACE_DEBUG"):
            raise
        explained = explain_unknown_type(error)
        if isinstance(explained, UnknownTypeError) or not isinstance(error, KeyError):
            print(f"error: {explained}", file=sys.stderr)
            sys.exit(2)
        raise
    except RuntimeError as error:
        lost = distributed_failure(error)
        if lost is None or os.environ.get("INTERLACE_DEBUG"):
            raise
        print(f"error: {lost}", file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.exit(code or 0)


def model_init_params(cls: type) -> set[str]:
    """Names of the ``__init__`` arguments of `cls` and its bases."""
    import inspect

    return {name for klass in cls.__mro__ if "__init__" in vars(klass)
            for name in inspect.signature(klass.__init__).parameters}


def add_drop_arguments(parser: argparse.ArgumentParser, what: str = "run") -> None:
    """``--drop NAME [NAME ...]`` and ``--drop-views K``: run the model as if inputs were
    missing, for robustness studies (sets ``model.drop_modalities`` / ``model.drop_views``)."""
    parser.add_argument(
        "--drop", nargs="+", metavar="NAME",
        help=f"{what} as if these input modalities were missing, to measure what each one "
             "adds (sets model.drop_modalities; the names are the model's own, e.g. "
             "`--drop camera` or `--drop lidar` for DeepInteraction, `--drop sar` or "
             "`--drop optical` for SkySense); fails if the model cannot drop inputs")
    parser.add_argument(
        "--drop-views", type=int, metavar="K",
        help=f"{what} with K of the camera views marked missing in every sample (sets "
             "model.drop_views); fails if the model has no views to drop")


def apply_drop(cfg: Config, names: Optional[list[str]], drop_views: Optional[int] = None
               ) -> None:
    """Set ``cfg.model.drop_modalities`` to `names` (in order, without repeats) and
    ``cfg.model.drop_views`` to `drop_views`, after checking that the model class takes
    those arguments.

    Raises:
        ToolError: the config has no model, its model class takes no such argument, or
            `drop_views` is negative.
    """
    if not names and drop_views is None:
        return
    import interlace.registry  # noqa: F401  lets MODELS find the domains' models
    from .registry import MODELS

    model_cfg = cfg.get("model")
    flag = f"--drop {' '.join(names)}" if names else f"--drop-views {drop_views}"
    if not model_cfg:
        raise ToolError(f"{flag}: config {cfg.filename} has no `model`")
    model_type = model_cfg.get("type")
    model_cls = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    # An unknown type is left to the model build, which names it and close matches.
    params = model_init_params(model_cls) if model_cls is not None else None
    if names:
        if params is not None and "drop_modalities" not in params:
            raise ToolError(f"--drop {' '.join(names)}: model {model_type} has no "
                            "`drop_modalities` option, so it cannot run without an input")
        model_cfg["drop_modalities"] = tuple(dict.fromkeys(names))
    if drop_views is not None:
        if drop_views < 0:
            raise ToolError(f"--drop-views {drop_views}: K must be 0 or more")
        if params is not None and "drop_views" not in params:
            raise ToolError(f"--drop-views {drop_views}: model {model_type} has no "
                            "`drop_views` option (it takes no camera views)")
        model_cfg["drop_views"] = drop_views


def teardown_distributed() -> None:
    """Wait for every rank, then destroy the process group. Leaving a gloo group alive at
    interpreter exit lets its threads be killed mid-wait ("terminate called without an
    active exception", SIGABRT), which torchrun reports as a failed run."""
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
