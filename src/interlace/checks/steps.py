"""The step kinds every check has: ``train`` and ``test``, each the same sequence of calls
as ``tools/train.py`` / ``tools/test.py`` (load the config with the overrides, build the
Runner, run it), so a check measures what a user's command produces."""
from __future__ import annotations

import os.path as osp
import shlex
from typing import Any, Optional

__all__ = ["STEP_KINDS", "train_step", "test_step", "train_command", "apply_budget",
           "finished_run"]


def _load(config: str, context: dict, cfg_options: Optional[dict], work_dir: Optional[str]):
    """`config` with the step's overrides (as ``--cfg-options``), then the check-wide ones
    ``--smoke`` adds, each only where the config has that section; and the iteration
    budget ``--smoke`` imposes (or None)."""
    from interlace.core.engine.cli import load_config
    cfg = load_config(config, dict(cfg_options or {}), work_dir)
    extra = {k: v for k, v in context["cfg_options"].items()
             if k != "budget_iters" and cfg.get(k.split(".")[0]) is not None}
    if extra:
        cfg.merge_from_dict(extra)
    return cfg, context["cfg_options"].get("budget_iters")


def apply_budget(cfg, max_iters: int) -> None:
    """Replace the TimeBudgetHook's budget with `max_iters` iterations (``--smoke``)."""
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "TimeBudgetHook":
            hook["max_iters"], hook["max_minutes"] = max_iters, None
            return
    if "max_iters" in cfg.get("train_cfg", {}):
        cfg.train_cfg["max_iters"] = max_iters
    elif "max_epochs" in cfg.get("train_cfg", {}):
        cfg.train_cfg["max_epochs"] = 1


def finished_run(cfg) -> Optional[tuple[str, int]]:
    """(checkpoint, iterations) when the work dir of `cfg` already holds a run that spent
    its whole iteration budget, else None.

    Only iteration budgets count: a run budgeted in minutes is resumed instead, since
    whether its budget was spent depends on the machine it ran on."""
    from interlace.core.engine.checkpoint import load_checkpoint_file
    from interlace.core.engine.checkpoint_files import resumable_checkpoint
    budget = None
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "TimeBudgetHook" and hook.get("max_minutes") is None:
            budget = hook.get("max_iters")
    budget = budget or cfg.get("train_cfg", {}).get("max_iters")
    if not budget or not osp.isdir(cfg.work_dir):
        return None
    path = resumable_checkpoint(cfg.work_dir)
    if path is None:
        return None
    done = int(load_checkpoint_file(path, map_location="cpu")["meta"].get("iter", 0))
    return (path, done) if done >= int(budget) else None


def train_command(config: str, work_dir: Optional[str], cfg_options: dict) -> str:
    """The ``tools/train.py`` command line that trains what the step trains."""
    parts = ["python", "tools/train.py", config]
    if work_dir:
        parts += ["--work-dir", work_dir]
    if cfg_options:
        parts.append("--cfg-options")
        parts += [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
                  for key, value in cfg_options.items()]
    return " ".join(shlex.quote(part) for part in parts)


def train_step(name: str, context: dict, config: str, work_dir: Optional[str] = None,
               cfg_options: Optional[dict] = None) -> dict[str, Any]:
    """Train `config` as ``tools/train.py config [--work-dir] [--cfg-options]`` does.

    With ``context['resume']`` (``tools/check.py --resume``) the step continues as
    ``tools/train.py --resume`` would, and a work dir whose run already spent its
    iteration budget is taken as it is (``reused`` in the outcome)."""
    from interlace.core.engine.cli import apply_resume, build_runner
    from interlace.core.engine.pretrained_init import resolve_checkpoint
    cfg, budget = _load(config, context, cfg_options, work_dir)
    if budget:
        apply_budget(cfg, int(budget))
    cfg.experiment_name = f"check_{name}"
    command = train_command(config, work_dir, dict(cfg_options or {}))
    finished = finished_run(cfg) if context.get("resume") else None
    if finished is not None:
        path, iters = finished
        print(f"== {name}: {path} finished its budget of {iters} iterations: taken as it is",
              flush=True)
        return dict(config=config, work_dir=cfg.work_dir, checkpoint=path, iters=iters,
                    command=command, reused=True, metrics=dict(iters=iters))
    apply_resume(cfg, "auto" if context.get("resume") else None)
    runner = build_runner(cfg)
    runner.train()
    iters = int(runner.iter)
    try:
        checkpoint = resolve_checkpoint(cfg.work_dir)
    except Exception:  # noqa: BLE001 - a run that saved nothing has no checkpoint to name
        checkpoint = None
    return dict(config=config, work_dir=cfg.work_dir, checkpoint=checkpoint, iters=iters,
                command=command, metrics=dict(iters=iters))


def test_step(name: str, context: dict, config: str, checkpoint: str,
              cfg_options: Optional[dict] = None, drop: Optional[list[str]] = None,
              work_dir: Optional[str] = None) -> dict[str, Any]:
    """Score `config` with the checkpoint of the train step named `checkpoint` (or a file)
    as ``tools/test.py config CHECKPOINT [--drop ...]`` does; metric names lose their
    evaluator prefixes (``NuScenes metric/.../mAP`` -> ``mAP``)."""
    from interlace.core.engine.cli import apply_drop, build_runner
    path = context["steps"][checkpoint]["checkpoint"] if checkpoint in context["steps"] \
        else checkpoint
    if not path or not osp.isfile(path):
        raise FileNotFoundError(f"check step {name}: checkpoint of {checkpoint!r} not found "
                                f"({path})")
    work_dir = work_dir or osp.join(context["out"], name)
    cfg, _ = _load(config, context, cfg_options, work_dir)
    cfg.experiment_name = f"check_{name}"
    cfg.load_from, cfg.resume = path, False
    apply_drop(cfg, list(drop) if drop else None)
    runner = build_runner(cfg)
    raw = runner.test()
    metrics = {key.split("/")[-1]: float(value) for key, value in raw.items()
               if isinstance(value, (int, float))}
    return dict(config=config, checkpoint=path, work_dir=work_dir, drop=drop,
                metrics=metrics, raw_metrics={k: v for k, v in raw.items()
                                              if isinstance(v, (int, float, str))})


STEP_KINDS = dict(train=train_step, test=test_step)
