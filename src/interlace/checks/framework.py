"""Run a check: prepare its data, run its steps through the mmengine Runner, score the
thresholds, write ``result.json`` and ``result.md``.

A check config (``configs/checks/<domain>.py``) is an mmengine config with:

- ``domain``: which of :data:`DOMAINS` prepares the data and adds step kinds;
- ``data``: arguments of the domain's ``prepare_data`` (where and how to generate the set;
  the training configs read the same folder, so ``tools/train.py CONFIG`` trains on it);
- ``steps``: a list of dicts, each with a unique ``name`` and a ``kind``:

  - ``train``: ``config`` trained exactly as ``tools/train.py CONFIG [--work-dir W]
    [--cfg-options ...]`` would (``work_dir``, ``cfg_options`` optional);
  - ``test``: ``config`` with the checkpoint of the train step ``checkpoint`` (its name),
    scored as ``tools/test.py`` would; ``drop`` names modalities to drop;
  - the domain's own kinds (e.g. ``probe`` and ``grounding`` for medical);

- ``thresholds``: a list of ``dict(name=..., value='<expression>', min=... | max=...)``;
  the expression combines ``step.metric`` names with + - * / and numbers;
- ``smoke`` (optional): ``dict(data=dict(...), cfg_options=dict(...))`` merged in by
  ``--smoke`` for a quick run of the whole sequence (tests use it).

Every step's metrics land in ``result.json`` under the step's name.
"""
from __future__ import annotations

import ast
import importlib
import json
import operator
import os.path as osp
import time
from typing import Any, Callable, Optional

from mmengine.config import Config

from interlace.core.engine.atomic_files import write_json_atomic, write_text_atomic

from .steps import STEP_KINDS

__all__ = ["run_check", "evaluate_expression", "DOMAINS", "CheckError"]

DOMAINS = {"driving": "interlace.checks.driving", "medical": "interlace.checks.medical",
           "remote_sensing": "interlace.checks.remote_sensing"}
_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv}


class CheckError(ValueError):
    """A check config that cannot be run as written."""


def evaluate_expression(expression: str, results: dict[str, dict]) -> float:
    """Value of `expression` (``step.metric`` names, numbers, + - * /, parentheses, unary
    minus) over `results` ({step name: {metric: value}})."""
    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, (ast.Attribute, ast.Name)):
            parts = []
            while isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            if not isinstance(node, ast.Name):
                raise CheckError(f"threshold {expression!r}: unsupported name")
            parts.append(node.id)
            step, *metric = reversed(parts)
            if step not in results:
                raise CheckError(f"threshold {expression!r}: no step {step!r} "
                                 f"(steps: {sorted(results)})")
            key = ".".join(metric)
            if key not in results[step]:
                raise CheckError(f"threshold {expression!r}: step {step!r} has no metric "
                                 f"{key!r} (has: {sorted(results[step])})")
            return float(results[step][key])
        raise CheckError(f"threshold {expression!r}: only step.metric names, numbers and "
                         "+ - * / are allowed")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise CheckError(f"threshold {expression!r}: {error.msg}") from error
    return value(tree)


def score_thresholds(thresholds: list[dict], results: dict[str, dict]) -> list[dict]:
    """Each threshold with its value and whether it holds."""
    rows = []
    for threshold in thresholds:
        low, high = threshold.get("min"), threshold.get("max")
        try:
            value, error = evaluate_expression(threshold["value"], results), None
        except CheckError as missing:  # a metric the run did not produce fails, named
            value, error = float("nan"), str(missing)
        holds = error is None and (low is None or value >= low) and (high is None or value <= high)
        rows.append(dict(name=threshold["name"], expression=threshold["value"], value=value,
                         min=low, max=high, holds=bool(holds), error=error))
    return rows


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def load_check(path: str, smoke: bool = False) -> Config:
    """The check config at `path`, with its ``smoke`` overrides applied when asked."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"check config not found: {path}")
    check = Config.fromfile(path)
    for key in ("domain", "data", "steps"):
        if key not in check:
            raise CheckError(f"{path}: a check config needs `{key}`")
    if check.domain not in DOMAINS:
        raise CheckError(f"{path}: unknown domain {check.domain!r}; one of {sorted(DOMAINS)}")
    names = [step["name"] for step in check.steps]
    if len(set(names)) != len(names):
        raise CheckError(f"{path}: step names must be unique, got {names}")
    if smoke:
        extra = check.get("smoke", {})
        check.data = _merge(check.data.to_dict(), extra.get("data", {}))
        check.step_cfg_options = extra.get("cfg_options", {})
    else:
        check.step_cfg_options = {}
    return check


def format_markdown(report: dict) -> str:
    """The report as markdown: one table of the steps, one of the thresholds."""
    lines = [f"# Check `{report['check']}`", "",
             f"{report['date']}, {report['machine']}; {report['seconds'] / 60:.1f} min in all.",
             "", "| step | kind | config | iterations | minutes | metrics |",
             "|---|---|---|---|---|---|"]
    for name, step in report["steps"].items():
        numbers = [(k, v) for k, v in step["metrics"].items() if isinstance(v, (int, float))]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in numbers[:6])
        shown += ", ..." if len(numbers) > 6 else ""
        lines.append(f"| {name} | {step['kind']} | `{step.get('config', '')}` | "
                     f"{step.get('iters', '')} | {step['seconds'] / 60:.1f}"
                     f"{' (reused)' if step.get('reused') else ''} | {shown} |")
    lines += ["", "| threshold | value | bound | |", "|---|---|---|---|"]
    for row in report["thresholds"]:
        bound = " and ".join(part for part in (
            f">= {row['min']}" if row["min"] is not None else "",
            f"<= {row['max']}" if row["max"] is not None else "") if part)
        verdict = "PASS" if row["holds"] else f"FAIL{': ' + row['error'] if row['error'] else ''}"
        lines.append(f"| {row['name']} | {row['value']:.4g} | {bound} | {verdict} |")
    commands = [step["command"] for step in report["steps"].values() if step.get("command")]
    if commands:
        lines += ["", "Each training step is this command:", "", "```bash", *commands, "```"]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    import platform

    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (f"{platform.machine()} {device}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")


def run_check(path: str, out: Optional[str] = None, smoke: bool = False,
              only: Optional[list[str]] = None, resume: bool = False) -> dict:
    """Run the check config at `path`; returns the report (also written to `out`).

    `resume` lets each training step continue from its work dir's latest checkpoint and
    take a run that already spent its iteration budget as it is."""
    import torch
    check = load_check(path, smoke)
    domain = importlib.import_module(DOMAINS[check.domain])
    kinds = dict(STEP_KINDS, **getattr(domain, "STEP_KINDS", {}))
    out = out or osp.join("work_dirs", "checks", osp.splitext(osp.basename(path))[0])
    if check.get("threads"):
        torch.set_num_threads(int(check.threads))
    started = time.perf_counter()
    context: dict[str, Any] = dict(out=out, data=domain.prepare_data(dict(check.data)),
                                   cfg_options=check.step_cfg_options, steps={},
                                   resume=resume)
    report: dict[str, Any] = dict(check=path, smoke=smoke, resume=resume, date=time.strftime("%Y-%m-%d"),
                                  machine=_machine(), data=context["data"], steps={})
    results: dict[str, dict] = {}
    for step in check.steps:
        step = dict(step)
        name, kind = step.pop("name"), step.pop("kind")
        if only and name not in only:
            continue
        if kind not in kinds:
            raise CheckError(f"{path}: step {name!r} has unknown kind {kind!r}; "
                             f"known: {sorted(kinds)}")
        print(f"== check step {name} ({kind})", flush=True)
        begin = time.perf_counter()
        outcome = kinds[kind](name, context, **step)
        outcome["seconds"] = round(time.perf_counter() - begin, 1)
        outcome["kind"] = kind
        context["steps"][name] = outcome
        report["steps"][name] = outcome
        results[name] = outcome["metrics"]
        print(f"== {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in outcome["metrics"].items()
                                          if isinstance(v, (int, float))), flush=True)
    thresholds = [t for t in check.get("thresholds", [])
                  if not only or all(n.split(".")[0] in results for n in _names(t["value"]))]
    report["thresholds"] = score_thresholds(thresholds, results)
    report["passed"] = all(row["holds"] for row in report["thresholds"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(osp.join(out, "result.json"), report, indent=1)
    write_text_atomic(osp.join(out, "result.md"), format_markdown(report))
    return report


def _names(expression: str) -> list[str]:
    tree = ast.parse(expression, mode="eval")
    return [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)]


def print_summary(report: dict) -> None:
    print(format_markdown(report))
    print(json.dumps(dict(passed=report["passed"]), indent=None))
