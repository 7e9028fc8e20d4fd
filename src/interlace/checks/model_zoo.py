"""The model zoo: one ``metafile.yml`` per method folder (``configs/<domain>/<method>/``),
in mmdet3d's layout (``Collections`` and ``Models``, each model with its config, metadata
and ``Results``), and the results table of the folder's ``README.md`` generated from it
between the markers ``<!-- results:begin -->`` and ``<!-- results:end -->``.

A check records its figures with ``tools/check.py DOMAIN --update-zoo``: each entry of
the check config's ``model_zoo`` list names a metafile, a model and the check metrics that
go into it; ``python -m interlace.checks.model_zoo`` re-renders every README.
"""
from __future__ import annotations

import argparse
import glob
import os.path as osp
from typing import Any, Optional

import yaml

from interlace.core.engine.atomic_files import write_text_atomic

from .framework import evaluate_expression

__all__ = ["load_metafile", "render_results", "update_readme", "record_results", "main",
           "BEGIN", "END"]

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def load_metafile(path: str) -> dict:
    if not osp.isfile(path):
        return dict(Collections=[], Models=[])
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    data.setdefault("Collections", [])
    data.setdefault("Models", [])
    return data


def render_results(metafile: dict) -> str:
    """The results table: one row per model and result, its metrics as columns."""
    rows = []
    for model in metafile.get("Models", []):
        meta = model.get("Metadata", {})
        for result in model.get("Results", []):
            rows.append((model, meta, result))
    if not rows:
        return "No results recorded yet.\n"
    metrics: list[str] = []
    for _, _, result in rows:
        metrics += [k for k in result.get("Metrics", {}) if k not in metrics]
    header = ["model", "data", *metrics, "budget", "date", "machine"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, meta, result in rows:
        values = [result.get("Metrics", {}).get(k) for k in metrics]
        shown = ["" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
                 for v in values]
        lines.append("| " + " | ".join([
            f"[{model['Name']}]({osp.basename(model.get('Config', ''))})",
            result.get("Dataset", ""), *shown, str(meta.get("Training Budget", "")),
            str(meta.get("Date", "")), str(meta.get("Machine", ""))]) + " |")
    commands = sorted({m.get("Command") for m, _, _ in rows if m.get("Command")})
    if commands:
        lines += ["", "Reproduce with:", "", "```bash", *commands, "```"]
    return "\n".join(lines) + "\n"


def update_readme(readme: str, table: str) -> bool:
    """Put `table` between the markers of `readme` (appending a section when there are
    none); True when the file changed."""
    text = open(readme, encoding="utf-8").read() if osp.isfile(readme) else ""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        new = text[:start] + block + text[end:]
    else:
        new = text.rstrip("\n") + ("\n\n" if text else "") + "## Results\n\n" + block + "\n"
    if new == text:
        return False
    write_text_atomic(readme, new)
    return True


def record_results(report: dict, entries: list[dict]) -> list[str]:
    """Write each ``model_zoo`` entry's metrics from a check `report` into its metafile and
    re-render the README beside it; returns the metafiles written."""
    results = {name: step["metrics"] for name, step in report["steps"].items()}
    written = []
    for entry in entries:
        path = entry["metafile"]
        data = load_metafile(path)
        if entry.get("collection") and not any(c.get("Name") == entry["collection"]
                                               for c in data["Collections"]):
            data["Collections"].append(dict(Name=entry["collection"]))
        metrics = {}
        for label, expression in entry["metrics"].items():
            value = evaluate_expression(expression, results)
            metrics[label] = round(value, 4)
        model: dict[str, Any] = dict(
            Name=entry["name"], Config=entry["config"],
            Metadata={"Training Data": entry.get("data", ""),
                      "Training Budget": entry.get("budget", ""),
                      "Date": report["date"], "Machine": report["machine"]},
            Results=[dict(Task=entry.get("task", ""), Dataset=entry.get("dataset", ""),
                          Metrics=metrics)],
            Command=entry.get("command", ""))
        if entry.get("collection"):
            model["In Collection"] = entry["collection"]
        data["Models"] = [m for m in data["Models"] if m.get("Name") != entry["name"]] + [model]
        write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, width=100))
        update_readme(osp.join(osp.dirname(path), "README.md"), render_results(data))
        written.append(path)
    return written


def main(argv: Optional[list[str]] = None) -> int:
    """Re-render the results table of every ``configs/*/*/README.md`` from its metafile;
    with --record CHECK_CONFIG RESULT_JSON, first record a finished check's figures."""
    parser = argparse.ArgumentParser(
        description=main.__doc__,
        epilog="example: python -m interlace.checks.model_zoo --record configs/checks/"
               "driving.py work_dirs/checks/driving/result.json")
    parser.add_argument("--configs", default="configs", help="the configs folder")
    parser.add_argument("--record", nargs=2, metavar=("CHECK_CONFIG", "RESULT_JSON"),
                        help="record the figures of a finished check run")
    args = parser.parse_args(argv)
    if args.record:
        import json

        from mmengine.config import Config
        with open(args.record[1], encoding="utf-8") as handle:
            report = json.load(handle)
        if report.get("smoke"):
            raise SystemExit(f"{args.record[1]} is a --smoke run: its figures mean nothing")
        for written in record_results(report, Config.fromfile(args.record[0]).get("model_zoo", [])):
            print(f"recorded {written}")
    for path in sorted(glob.glob(osp.join(args.configs, "*", "*", "metafile.yml"))):
        changed = update_readme(osp.join(osp.dirname(path), "README.md"),
                                render_results(load_metafile(path)))
        print(f"{path}: README {'updated' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
