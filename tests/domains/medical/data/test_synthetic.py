"""`tools/make_synthetic.py medical`: layout as published, deterministic, fast."""
import csv
import hashlib
from pathlib import Path

import pytest

from interlace.domains.medical.data.synthetic import CHEXPERT_CSV, METADATA_CSV, NEGBIO_CSV
from tests.fixtures.tools import load_tool

@pytest.fixture(scope="module")
def tool():
    return load_tool("make_synthetic")


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_cli_writes_the_published_layout_deterministically(tool, tmp_path, capsys):
    for name in ("a", "b"):
        assert tool.main(["medical", "--out", str(tmp_path / name), "--studies", "6",
                          "--seed", "7"]) == 0
    assert "6 studies" in capsys.readouterr().out
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    root = tmp_path / "a"
    with (root / METADATA_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        subject = row["subject_id"]
        image = (root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{row['study_id']}"
                 / f"{row['dicom_id']}.jpg")
        assert image.is_file()
        assert 256 <= int(row["Rows"]) <= 512
        assert image.parent.with_suffix(".txt").read_text().lstrip().startswith("FINAL REPORT")
    assert (root / CHEXPERT_CSV).read_text() == (root / NEGBIO_CSV).read_text()


def test_cli_help_shows_an_example(tool, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    assert "make_synthetic.py medical --out" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main(["medical", "--help"])
    assert "--with-bad-cases" in capsys.readouterr().out
