"""Package discovery for the `interlace` distribution.

`src/interlace` installs as `interlace`, `core/` as `interlace.core` and `domains/` as
`interlace.domains`. Every folder under them becomes a package (namespace discovery), so
a new folder such as `interlace.benchmarks` cannot be left out of the wheel by forgetting
an `__init__.py`; `tests/packaging` checks this.
"""
from setuptools import find_namespace_packages, setup

ROOTS = {"interlace": "src/interlace", "interlace.core": "core", "interlace.domains": "domains"}


def _packages() -> list[str]:
    packages = ["interlace"]
    for root in ("src/interlace", "core", "domains"):
        found = find_namespace_packages(where=root, exclude=["*__pycache__*"])
        prefix = "interlace" if root == "src/interlace" else f"interlace.{root}"
        if prefix != "interlace":
            packages.append(prefix)
        packages.extend(f"{prefix}.{name}" for name in found)
    return packages


setup(packages=_packages(), package_dir=ROOTS)
