"""tools/ holds thin entry points in mmdet3d's layout: each script imports its code from the
`interlace` package, shows an example, and nothing in the repository edits sys.path or
loads a module by file path."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "tools").rglob("*.py"))
# mmdet3d's tools/ sub-folders; a script elsewhere would be a new layout
FOLDERS = {"tools", "analysis_tools", "dataset_converters", "misc", "model_converters"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_tools_holds_scripts_in_mmdet3d_folders_only():
    assert SCRIPTS, "no scripts under tools/"
    assert not [p for p in SCRIPTS if p.name == "__init__.py"], "tools/ is not a package"
    misplaced = [_rel(p) for p in SCRIPTS if p.parent.name not in FOLDERS]
    assert not misplaced, f"scripts outside mmdet3d's tools/ folders: {misplaced}"


@pytest.mark.parametrize("script", SCRIPTS, ids=_rel)
def test_script_is_a_thin_entry_point(script):
    tree = ast.parse(script.read_text())
    doc = ast.get_docstring(tree) or ""
    assert "python tools/" in doc, f"{_rel(script)}: the docstring shows no example command"
    defined = [node.name for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, f"{_rel(script)} defines {defined}: move them into the package"
    imported = {alias.name.split(".")[0] if isinstance(node, ast.Import)
                else (node.module or "").split(".")[0]
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert "interlace" in imported, f"{_rel(script)} does not call into the interlace package"
    assert imported <= {"interlace", "sys"}, f"{_rel(script)} imports {sorted(imported)}"


_PATH_HACKS = re.compile(r"sys\.path\.(insert|append)|^\s*(from|import) tools\b|"
                         r"spec_from_file_location\([^)]*\btools\b", re.MULTILINE)


def test_nothing_edits_sys_path_or_loads_a_tool_by_file_path():
    offenders = []
    for top in ("tools", "src", "core", "domains", "tests", "configs"):
        for py in (ROOT / top).rglob("*.py"):
            if py == Path(__file__).resolve():
                continue
            offenders += [f"{_rel(py)}: {m.group(0).strip()}"
                          for m in _PATH_HACKS.finditer(py.read_text())]
    assert not offenders, "\n".join(offenders)
