"""MIMIC-CXR's DICOM release read as well as the JPG release, gzipped tables included."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from interlace.domains.medical.data.mimic import (LABEL_CSVS, METADATA_CSV, SPLIT_CSV,
                                                  MimicCxrDataset, MimicCxrIndex)
from interlace.domains.medical.data.synthetic import make_synthetic_mimic
from interlace.domains.medical.data.transforms import (ImageLoadError, LoadCxrImaged,
                                                       build_cxr_transforms)

STUDIES = 10
SIZES = dict(min_size=64, max_size=80)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    jpg = tmp_path_factory.mktemp("mimic_jpg")
    dcm = tmp_path_factory.mktemp("mimic_dcm")
    make_synthetic_mimic(jpg, STUDIES, seed=3, with_bad_cases=True, **SIZES)
    summary = make_synthetic_mimic(dcm, STUDIES, seed=3, with_bad_cases=True,
                                   image_format="dcm", **SIZES)
    return jpg, dcm, summary


def _without_suffix(records):
    return [(r.subject_id, r.study_id, r.split, Path(r.img_path).stem, r.dicom_ids, r.view,
             r.report, r.labels) for r in records]


def test_dicom_tree_is_the_published_layout_as_hospitals_write_it(releases):
    _, dcm, summary = releases
    frontal = summary["truth"][0]["frontal"][0]
    study = summary["truth"][0]
    path = (dcm / "files" / f"p{str(study['subject_id'])[:2]}" / f"p{study['subject_id']}"
            / f"s{study['study_id']}" / f"{frontal}.dcm")
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert (ds.PhotometricInterpretation, ds.BitsStored) == ("MONOCHROME1", 12)
    assert not list(dcm.rglob("*.jpg"))


def test_index_of_the_dicom_release_equals_the_jpg_release(releases):
    jpg, dcm, _ = releases
    for unit in ("image", "study"):
        from_jpg = MimicCxrIndex(jpg, unit=unit).build()
        builder = MimicCxrIndex(dcm, unit=unit)  # image_format='auto'
        from_dcm = builder.build()
        assert builder.image_format == "dcm"
        assert all(r.img_path.endswith(".dcm") for r in from_dcm.records)
        assert _without_suffix(from_dcm.records) == _without_suffix(from_jpg.records)
        assert from_dcm.dropped == from_jpg.dropped
    assert MimicCxrIndex(dcm, image_format="jpg").build().dropped["missing_image"] > 0


def test_dicom_images_load_as_their_jpg_twins(releases):
    jpg, dcm, summary = releases
    truncated = summary["bad_cases"]["truncated_jpeg"]
    transform = build_cxr_transforms(False, image_size=64, crop_size=64)
    from_jpg, from_dcm = (MimicCxrDataset(str(root), split=None, unit="study",
                                          pipeline=[transform], test_mode=True)
                          for root in (jpg, dcm))
    assert len(from_dcm) == len(from_jpg) == STUDIES + 1  # + the truncated file's study
    compared = 0
    for index in range(len(from_dcm)):
        if from_dcm.get_data_info(index)["study_id"] == truncated:
            for dataset, suffix in ((from_jpg, "jpg"), (from_dcm, "dcm")):
                with pytest.raises(ImageLoadError, match=rf"\.{suffix}: "):
                    dataset[index]
            continue
        a, b = from_jpg[index], from_dcm[index]
        assert a["study_id"] == b["study_id"]
        np.testing.assert_array_equal(a["labels"], b["labels"])
        # normalised to [-1, 1]: the lossless DICOM differs from the quality-90 JPG by
        # JPEG's error only (a few grey levels of 255)
        difference = (a["img"] - b["img"]).abs()
        assert difference.mean() < 0.03 and difference.max() < 0.3
        compared += 1
    assert compared == STUDIES


def test_truncated_dicom_is_skipped_in_training_and_named(releases):
    _, dcm, summary = releases
    dataset = MimicCxrDataset(str(dcm), split=None, unit="study",
                              pipeline=[LoadCxrImaged()])
    bad = summary["bad_cases"]["truncated_jpeg"]
    index = next(i for i in range(len(dataset))
                 if dataset.get_data_info(i)["study_id"] == bad)
    assert dataset.prepare_data(index) is None
    assert dataset.skipped == {"unreadable_image": 1}
    with pytest.raises(ImageLoadError, match=r"\.dcm: "):
        LoadCxrImaged()({"img_path": dataset.get_data_info(index)["img_path"]})


def test_gzipped_tables_as_downloaded_are_read(releases, tmp_path):
    _, dcm, _ = releases
    root = tmp_path / "gz"
    shutil.copytree(dcm, root)
    for name in (METADATA_CSV, SPLIT_CSV, *LABEL_CSVS.values()):
        with (root / name).open("rb") as plain, gzip.open(root / f"{name}.gz", "wb") as zipped:
            shutil.copyfileobj(plain, zipped)
        (root / name).unlink()
    plain_index = MimicCxrIndex(dcm).build()
    gz_index = MimicCxrIndex(root, cache_path=tmp_path / "cache.json").build()
    assert [r.dicom_ids for r in gz_index.records] == [r.dicom_ids for r in plain_index.records]
    assert [r.labels for r in gz_index.records] == [r.labels for r in plain_index.records]
    again = MimicCxrIndex(root, cache_path=tmp_path / "cache.json")
    again.build()
    assert again.loaded_from_cache
