"""The synthetic MIMIC-CXR-JPG set read back by the index and the dataset."""
import logging
import os

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from PIL import Image

from interlace.core.engine.registry import DATASETS
from interlace.domains.medical.data.chexpert import CHEXPERT_LABELS
from interlace.domains.medical.data.mimic import (METADATA_CSV, SPLIT_CSV, MimicCxrDataset,
                                                  MimicCxrIndex)
from interlace.domains.medical.data.synthetic import make_synthetic_mimic
from interlace.domains.medical.data.transforms import ImageLoadError, build_cxr_transforms

STUDIES = 24


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    summary = make_synthetic_mimic(root, STUDIES, seed=1, with_bad_cases=True)
    summary["by_study"] = {t["study_id"]: t for t in summary["truth"]}
    return summary


def _label(record, name):
    return record.labels[CHEXPERT_LABELS.index(name)]


def test_index_keeps_frontal_images_and_counts_every_drop(synthetic):
    index = MimicCxrIndex(synthetic["root"]).build()
    # Of the frontal images, three belong to broken studies: empty report, missing report,
    # missing image file. The truncated JPEG only shows when it is decoded.
    assert len(index.records) == synthetic["frontal_images"] - 3
    assert all(r.view in ("PA", "AP") for r in index.records)
    assert index.dropped == {"lateral_view": synthetic["lateral_images"],
                             "lateral_only_study": 1, "empty_report": 1,
                             "missing_report": 1, "missing_image": 1}
    assert synthetic["lateral_images"] >= 0.15 * (synthetic["frontal_images"]
                                                  + synthetic["lateral_images"])
    study_index = MimicCxrIndex(synthetic["root"], unit="study").build()
    assert len(study_index.records) == STUDIES + 1  # good studies + the truncated one


def test_labels_and_reports_match_the_drawn_findings(synthetic):
    records = MimicCxrIndex(synthetic["root"], unit="study").build().records
    seen_uncertain = False
    for record in records:
        truth = synthetic["by_study"][record.study_id]
        text = " ".join(record.sentences)
        if truth["opacity"]:
            side, zone = truth["opacity"]
            assert f"{side} {zone} lobe opacity" in text
            assert _label(record, "Lung Opacity") == (-1.0 if truth["opacity_uncertain"] else 1.0)
            seen_uncertain |= truth["opacity_uncertain"]
        else:
            assert np.isnan(_label(record, "Lung Opacity"))
        assert _label(record, "Pleural Effusion") == (1.0 if truth["effusion"] else 0.0)
        if truth["effusion"]:
            assert f"small {truth['effusion']} pleural effusion" in text
        assert (_label(record, "Cardiomegaly") == 1.0) == truth["cardiomegaly"]
        assert (_label(record, "Support Devices") == 1.0) == truth["support_device"]
        normal = not (truth["opacity"] or truth["effusion"] or truth["cardiomegaly"]
                      or truth["support_device"])
        assert (_label(record, "No Finding") == 1.0) == normal
    assert any(synthetic["by_study"][r.study_id]["cardiomegaly"] for r in records)


def _mask(root, finding, img_path):
    dicom_id = os.path.splitext(os.path.basename(img_path))[0]
    return np.asarray(Image.open(os.path.join(root, "masks", finding, f"{dicom_id}.png"))) > 0


def _heart_width(root, img_path):
    """Widest row of the drawn cardiac silhouette, as a fraction of the film's width."""
    return float(_mask(root, "heart", img_path).mean(axis=1).max())


def _opacity_contrast(root, img_path):
    """Mean brightness in the drawn opacity minus that of a 6-pixel ring around it
    (outside the heart): the film itself must show the finding."""
    from scipy.ndimage import binary_dilation

    pixels = np.asarray(Image.open(img_path), np.float32)
    opacity, heart = _mask(root, "opacity", img_path), _mask(root, "heart", img_path)
    ring = binary_dilation(opacity, iterations=6) & ~opacity & ~heart
    return float(pixels[opacity].mean() - pixels[ring].mean())


def test_findings_are_visible_where_the_labels_say(synthetic):
    records = [r for r in MimicCxrIndex(synthetic["root"], unit="study").build().records
               if not synthetic["by_study"][r.study_id]["bad_case"]]
    truths = [synthetic["by_study"][r.study_id] for r in records]
    widths = {True: [], False: []}
    for record, truth in zip(records, truths):
        widths[truth["cardiomegaly"]].append(_heart_width(synthetic["root"], record.img_path))
    assert min(widths[True]) > max(widths[False])   # enlarged heart is wider on the film
    contrasts = [_opacity_contrast(synthetic["root"], r.img_path)
                 for r, t in zip(records, truths) if t["opacity"] and not t["opacity_uncertain"]]
    assert contrasts and np.mean(np.array(contrasts) > 0) >= 0.9


def test_cache_is_reused_and_invalidated_when_a_csv_changes(synthetic, tmp_path):
    cache = tmp_path / "cache" / "mimic_index.json"
    first = MimicCxrIndex(synthetic["root"], cache_path=cache)
    built = first.build()
    assert not first.loaded_from_cache and cache.is_file()
    second = MimicCxrIndex(synthetic["root"], cache_path=cache)
    reused = second.build()
    assert second.loaded_from_cache
    assert [r.img_path for r in reused.records] == [r.img_path for r in built.records]
    assert reused.dropped == built.dropped
    np.testing.assert_array_equal(reused.records[0].labels, built.records[0].labels)

    other_unit = MimicCxrIndex(synthetic["root"], unit="study", cache_path=cache)
    other_unit.build()
    assert not other_unit.loaded_from_cache   # options are part of the key

    split = os.path.join(synthetic["root"], SPLIT_CSV)
    stat = os.stat(split)
    os.utime(split, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    after_edit = MimicCxrIndex(synthetic["root"], unit="study", cache_path=cache)
    after_edit.build()
    assert not after_edit.loaded_from_cache


def test_corrupt_cache_is_rebuilt(synthetic, tmp_path, caplog):
    cache = tmp_path / "index.json"
    cache.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        index = MimicCxrIndex(synthetic["root"], cache_path=cache)
        assert index.build().records
    assert not index.loaded_from_cache and "unreadable index cache" in caplog.text


def test_missing_table_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=METADATA_CSV):
        MimicCxrIndex(tmp_path).build()


def test_dataset_returns_pipeline_output_and_split_filter(synthetic):
    dataset = MimicCxrDataset(synthetic["root"], split="train", unit="study",
                              pipeline=[build_cxr_transforms(train=False)], lazy_init=True)
    assert dataset.metainfo["classes"] == CHEXPERT_LABELS
    dataset.full_init()
    assert 0 < len(dataset) <= STUDIES + 1
    assert all(dataset.get_data_info(i)["split"] == "train" for i in range(len(dataset)))
    every = MimicCxrDataset(synthetic["root"], split=None, unit="study")
    assert len(every) == STUDIES + 1
    info = dataset.get_data_info(0)
    good = next(i for i in range(len(dataset))
                if not synthetic["by_study"][dataset.get_data_info(i)["study_id"]]["bad_case"])
    sample = dataset[good]
    assert sample["img"].shape == (1, 224, 224) and sample["img"].dtype == torch.float32
    assert sample["labels"].shape == (14,) and sample["labels"].dtype == np.float32
    assert sample["sentences"] and isinstance(sample["report"], str)
    assert isinstance(info["study_id"], int) and info["img_path"].endswith(".jpg")


def test_truncated_jpeg_is_skipped_in_training_and_raises_in_test_mode(synthetic):
    truncated = synthetic["bad_cases"]["truncated_jpeg"]
    train = MimicCxrDataset(synthetic["root"], split=None,
                            pipeline=[build_cxr_transforms(train=True)])
    bad = next(i for i in range(len(train)) if train.get_data_info(i)["study_id"] == truncated)
    sample = train[bad]          # mmengine fetches another (random) sample instead
    # >= 1: the random replacement may hit the truncated image again before a good one.
    assert sample["study_id"] != truncated and train.skipped["unreadable_image"] >= 1
    test = MimicCxrDataset(synthetic["root"], split=None, test_mode=True,
                           pipeline=[build_cxr_transforms(train=False)])
    with pytest.raises(ImageLoadError, match=f"s{truncated}/.*jpg"):
        test[bad]


def test_dataset_builds_from_a_config_dict(synthetic):
    with DefaultScope.overwrite_default_scope("interlace"):
        dataset = DATASETS.build(dict(
            type="MimicCxrDataset", data_root=synthetic["root"], split="train",
            uncertainty="ignore",
            pipeline=[dict(type="LoadCxrImaged"), dict(type="ResizeLongestPadd", size=64),
                      dict(type="CxrCropd", size=56, random=False), dict(type="CxrNormalized")]))
        good = next(i for i in range(len(dataset)) if not synthetic["by_study"][
            dataset.get_data_info(i)["study_id"]]["bad_case"])
        assert dataset[good]["img"].shape == (1, 56, 56)
    masks = [dataset.get_data_info(i)["label_mask"] for i in range(len(dataset))]
    uncertain = [dataset.get_data_info(i)["labels"] for i in range(len(dataset))]
    for mask, labels in zip(masks, uncertain):
        assert np.array_equal(np.isnan(labels), mask == 0)
