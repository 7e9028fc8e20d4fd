"""Package discovery for the `interlace` distribution.

`core/` installs as `interlace.core` and `domains/` as `interlace.domains` (DESIGN.md).
Every folder under them becomes a package (namespace discovery), so a new folder cannot
be left out of the wheel by forgetting an `__init__.py`; `tests/packaging` checks this.
"""
from setuptools import find_namespace_packages, setup

ROOTS = {"interlace": "src/interlace", "interlace.core": "core", "interlace.domains": "domains"}


def _packages() -> list[str]:
    packages = ["interlace"]
    for prefix in ("core", "domains"):
        found = find_namespace_packages(where=prefix, exclude=["*__pycache__*"])
        packages.append(f"interlace.{prefix}")
        packages.extend(f"interlace.{prefix}.{name}" for name in found)
    return packages


setup(packages=_packages(), package_dir=ROOTS)
