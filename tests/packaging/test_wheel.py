"""The built wheel holds every package under src/interlace, core/ and domains/, mapped under
`interlace`."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_IGNORED_ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
_IGNORED_AT_ROOT = {".venv", ".git", "work_dirs", "build", "dist", "data"}


def IGNORED(directory: str, names: list[str]) -> set[str]:
    """Skip build and data folders at the root only (domains have `data/` packages)."""
    skipped = set(_IGNORED_ANYWHERE(directory, names))
    if Path(directory).resolve() == ROOT:
        skipped |= _IGNORED_AT_ROOT & set(names)
    return skipped


def _source_packages() -> set[str]:
    """Every folder under src/interlace, core/ and domains/ that holds Python files, as the
    dotted name it installs under."""
    found = set()
    for top, prefix in (("src/interlace", ()), ("core", ("core",)), ("domains", ("domains",))):
        for py in (ROOT / top).rglob("*.py"):
            if "__pycache__" in py.parts:
                continue
            rel = py.parent.relative_to(ROOT / top)
            found.add(".".join(("interlace",) + prefix + rel.parts))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORED)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp / "dist").glob("interlace-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_contains_every_source_package(wheel):
    in_wheel = {str(Path(name).parent).replace("/", ".") for name in wheel.namelist()
                if name.endswith(".py")}
    missing = _source_packages() - in_wheel
    assert not missing, f"packages left out of the wheel: {sorted(missing)}"


def test_wheel_maps_core_and_domains_under_interlace(wheel):
    names = wheel.namelist()
    assert "interlace/__init__.py" in names and "interlace/info.py" in names
    assert "interlace/core/engine/registry.py" in names
    assert "interlace/domains/__init__.py" in names
    # the package code of the tools, the benchmarks and the demo (tools/ calls it)
    assert {"interlace/tools/infer.py", "interlace/benchmarks/runner.py",
            "interlace/demo/runner.py"} <= set(names)
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"interlace"}, f"the wheel installs other top-level names: {top_level}"


def test_wheel_metadata_declares_dependencies_and_extras(wheel):
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(meta).decode()
    for requirement in ("mmengine", "spconv", "nuscenes-devkit", "rasterio", "monai",
                        "pydicom", "transformers", "einops", "scipy", "numpy"):
        assert f"Requires-Dist: {requirement}" in text
    assert "Provides-Extra: test" in text and "Provides-Extra: mmdet3d" in text
    assert "numpy<2" in text.replace(" ", "").replace(">=1.24,", "")


def test_core_never_imports_domains():
    """`core/` is generic; domains plug into it, never the other way round
    (docs/architecture.md, "Import rules").
    Checks imports and module-name strings (registry locations), not prose."""
    import ast

    offenders = []
    for py in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]
            for name in names:
                if name.startswith(("interlace.domains", "domains")) or "...domains" in name:
                    offenders.append(f"{py.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, "core/ names a domain:\n" + "\n".join(offenders)
