"""Model zoo: metafiles record a check's figures; README tables are generated from them."""
from __future__ import annotations

import glob
from pathlib import Path

import yaml

from interlace.checks.model_zoo import (BEGIN, END, load_metafile, record_results,
                                        render_results, update_readme)

ROOT = Path(__file__).resolve().parents[2]


def test_record_writes_the_metafile_and_the_readme_table(tmp_path):
    metafile = tmp_path / "metafile.yml"
    readme = tmp_path / "README.md"
    readme.write_text("# Method\n\nintro\n")
    report = dict(date="2026-12-07", machine="x86_64 CPU",
                  steps={"a_test": dict(metrics={"mAP": 0.81234, "NDS": 0.7}),
                         "b_test": dict(metrics={"mAP": 0.7})})
    entry = dict(metafile=str(metafile), collection="M", name="m_tiny", config="configs/x/m.py",
                 task="Det", dataset="val", data="train", budget="15 CPU-min",
                 command="python tools/check.py x",
                 metrics={"mAP": "a_test.mAP", "gain": "a_test.mAP - b_test.mAP"})
    assert record_results(report, [entry]) == [str(metafile)]
    data = yaml.safe_load(metafile.read_text())
    assert data["Models"][0]["Results"][0]["Metrics"] == {"mAP": 0.8123, "gain": 0.1123}
    text = readme.read_text()
    assert text.startswith("# Method\n\nintro\n") and BEGIN in text and END in text
    assert "| [m_tiny](m.py) | val | 0.812 | 0.112 | 15 CPU-min | 2026-12-07 | x86_64 CPU |" in text
    # recording again replaces the model's entry and leaves the README's other text alone
    report["steps"]["a_test"]["metrics"]["mAP"] = 0.9
    record_results(report, [entry])
    assert len(yaml.safe_load(metafile.read_text())["Models"]) == 1
    assert "| 0.900 | 0.200 |" in readme.read_text() and readme.read_text().count(BEGIN) == 1


def test_update_readme_is_idempotent(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{BEGIN}\nold\n{END}\nb\n")
    assert update_readme(str(readme), "new\n")
    assert readme.read_text() == f"a\n{BEGIN}\nnew\n{END}\nb\n"
    assert not update_readme(str(readme), "new\n")


def test_every_readme_table_is_the_one_its_metafile_generates():
    for metafile in glob.glob(str(ROOT / "configs" / "*" / "*" / "metafile.yml")):
        readme = Path(metafile).with_name("README.md").read_text()
        table = render_results(load_metafile(metafile))
        assert f"{BEGIN}\n{table}{END}" in readme, (
            f"{metafile}: README table out of date; run python -m interlace.checks.model_zoo")
