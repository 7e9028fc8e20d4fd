"""Environment report: `python -m interlace.info [--json]`.

Prints the versions of Interlace and its dependencies, the compute devices, the thread
settings, and which optional integrations (mmdet3d, GPU spconv) can be used here.
Attach its output to a bug report.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import os
import platform
import sys
from typing import Any

# Distribution name -> import name, in the order they are printed.
DEPENDENCIES = {
    "torch": "torch", "mmengine": "mmengine", "spconv": "spconv", "cumm": "cumm",
    "nuscenes-devkit": "nuscenes", "rasterio": "rasterio", "monai": "monai",
    "pydicom": "pydicom", "transformers": "transformers", "einops": "einops",
    "scipy": "scipy", "numpy": "numpy", "shapely": "shapely",
}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _spconv_distribution() -> str | None:
    """spconv ships as `spconv` (CPU) or `spconv-cu1xx` (CUDA builds)."""
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "spconv" or name.startswith("spconv-cu"):
            return f"{name} {dist.version}"
    return None


def _mmdet3d() -> dict[str, Any]:
    report: dict[str, Any] = {"mmdet3d": _version("mmdet3d"), "mmdet": _version("mmdet"),
                              "mmcv": _version("mmcv")}
    compiled = False
    if report["mmcv"]:
        try:
            importlib.import_module("mmcv._ext")
            compiled = True
        except Exception:  # noqa: BLE001 - any failure means the ops are unusable
            compiled = False
    report["mmcv_compiled_ops"] = compiled
    report["available"] = bool(report["mmdet3d"] and compiled)
    return report


def collect() -> dict[str, Any]:
    """Gather the report as a dict (also used by `make demo`'s summary)."""
    import torch

    import interlace

    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.1f} GiB)")
    try:
        from interlace.core.ops.sparse_conv import SPCONV_AVAILABLE, spconv_gpu_available
        spconv_gpu = spconv_gpu_available()
    except ImportError:
        SPCONV_AVAILABLE, spconv_gpu = False, False
    return {
        "interlace": interlace.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in DEPENDENCIES},
        "torch_build": {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()
                        if torch.backends.cudnn.is_available() else None,
                        "debug": torch.version.debug},
        "devices": {"cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available(),
                    "cuda_devices": devices},
        "threads": {"torch_num_threads": torch.get_num_threads(),
                    "torch_num_interop_threads": torch.get_num_interop_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS")},
        "optional": {"spconv": _spconv_distribution() if SPCONV_AVAILABLE else None,
                     "spconv_gpu": spconv_gpu, "mmdet3d": _mmdet3d()},
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"Interlace {report['interlace']}  (Python {report['python']}, {report['platform']})",
             "", "Dependencies:"]
    for name, version in report["versions"].items():
        lines.append(f"  {name:<16} {version or 'not installed'}")
    build = report["torch_build"]
    lines += ["", "Devices:",
              f"  CPUs              {report['devices']['cpu_count']}",
              f"  torch CUDA build  {build['cuda'] or 'none (CPU build)'}",
              f"  CUDA available    {report['devices']['cuda_available']}"]
    lines += [f"  {d}" for d in report["devices"]["cuda_devices"]]
    threads = report["threads"]
    lines += ["", "Threads:",
              f"  torch intra-op    {threads['torch_num_threads']}",
              f"  torch inter-op    {threads['torch_num_interop_threads']}",
              f"  OMP_NUM_THREADS   {threads['OMP_NUM_THREADS'] or 'unset'}",
              f"  MKL_NUM_THREADS   {threads['MKL_NUM_THREADS'] or 'unset'}"]
    opt = report["optional"]
    mm = opt["mmdet3d"]
    mm_text = ("yes" if mm["available"] else "no") + (
        f" (mmdet3d {mm['mmdet3d'] or '-'}, mmcv {mm['mmcv'] or '-'}, compiled ops "
        f"{'yes' if mm['mmcv_compiled_ops'] else 'no'})")
    lines += ["", "Optional integrations:",
              f"  spconv            {opt['spconv'] or 'not installed'}",
              f"  GPU spconv        {'yes' if opt['spconv_gpu'] else 'no'}",
              f"  mmdet3d           {mm_text}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interlace.info",
        description="Print versions, devices, threads and optional integrations.",
        epilog="examples:\n  python -m interlace.info\n  python -m interlace.info --json > env.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--save", metavar="FILE", help="also write the report as JSON to FILE")
    args = parser.parse_args(argv)
    report = collect()
    if args.save:
        from interlace.core.engine.atomic_files import write_json_atomic
        write_json_atomic(args.save, report, indent=2)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
