"""interlace.warning_filters: known third-party warnings are silenced by message and
module only; any other warning of the same category still shows."""
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest

from interlace.warning_filters import (KNOWN_THIRD_PARTY_WARNINGS, KnownLogMessageFilter,
                                       filterwarnings_lines, ignore_known_warnings, parse_filter,
                                       pythonwarnings)

JIT = "ignore:`torch.jit.script` is deprecated:DeprecationWarning:torch.jit._script"


def _shown(message: str, module: str, category=DeprecationWarning) -> bool:
    """Whether a warning `message` attributed to `module` gets through the known filters."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_known_warnings((JIT,))
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1,
                               module=module)
    return bool(caught)


def test_a_known_warning_is_silenced_only_from_its_module():
    text = "`torch.jit.script` is deprecated. Please switch to `torch.compile`."
    assert not _shown(text, "torch.jit._script")
    assert _shown(text, "interlace.core.ops.sparse_conv")  # our code calling it: shown
    assert _shown(text, "torch.jit._script_other")  # the module name must match exactly


def test_other_deprecations_of_the_same_module_still_show():
    assert _shown("`torch.jit.trace` is deprecated.", "torch.jit._script")
    assert _shown("`torch.jit.script` is deprecated.", "torch.jit._script", FutureWarning)


def test_every_known_entry_parses_and_its_pytest_line_matches_its_message():
    for spec, line in zip(KNOWN_THIRD_PARTY_WARNINGS, filterwarnings_lines()):
        entry = parse_filter(spec)
        assert entry.action == "ignore" and issubclass(entry.category, Warning)
        action, message, category, module = line.split(":")
        assert re.match(message, entry.message + " and the rest of the text")
        assert category == entry.category.__name__
        assert not module or re.match(module + r"\Z", entry.module)


@pytest.mark.parametrize("spec, error", [
    ("ignore:no category", "expected action:message:category:module"),
    ("ignore:a, b:DeprecationWarning:", "no ':' or ','"),
    ("ignore:text:NoSuchWarning:", "'NoSuchWarning' is not a built-in warning category"),
])
def test_malformed_entries_are_refused_with_the_reason(spec, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_filter(spec)


def test_child_processes_get_the_filters_and_the_users_own_keep_precedence():
    code = ("import warnings\n"
            "warnings.warn_explicit('`torch.jit.script` is deprecated.', DeprecationWarning,"
            " 'x.py', 1, module='torch.jit._script')\n"
            "warnings.warn('an unknown deprecation', DeprecationWarning)\n")
    env = dict(os.environ, PYTHONWARNINGS=pythonwarnings("always::DeprecationWarning"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert "an unknown deprecation" in proc.stderr
    assert "torch.jit.script" in proc.stderr  # the user's 'always' comes last and wins
    # 'always' for every deprecation first, the known filters after it: only theirs go
    env["PYTHONWARNINGS"] = "always::DeprecationWarning," + pythonwarnings()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert "an unknown deprecation" in proc.stderr and "torch.jit.script" not in proc.stderr


def test_log_filter_drops_only_the_known_messages():
    keep = KnownLogMessageFilter()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("mmengine", logging.WARNING, "x.py", 1, message, None, None)

    assert not keep.filter(record('"FileClient" will be deprecated in future. Please use io'))
    assert not keep.filter(record('"HardDiskBackend" is the alias of "LocalBackend" and ...'))
    assert keep.filter(record('"FileClient" is used by our own hook'))  # not the known text
    assert keep.filter(record("loss is NaN at iteration 3"))
