"""A CheXpert-style folder of DICOMs with label CSVs, read and fed to the linear probe."""
import csv
import math

import numpy as np
import pytest
import torch

from interlace.core.engine.registry import DATASETS
from interlace.domains.medical.data.chexpert_dataset import ChexpertDataset
from interlace.domains.medical.data.synthetic_dicom import write_radiograph_dicom
from interlace.domains.medical.data.transforms import ImageLoadError, build_cxr_transforms
from interlace.domains.medical.evaluation.linear_probe import (extract_features,
                                                               run_linear_probe)

COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "Cardiomegaly",
           "Pleural Effusion", "Site"]  # 'Site': a column of the export, not CheXpert's


def _write_split(root, split, rows):
    """rows: (patient, effusion value, view); effusion brightens the image."""
    with (root / f"{split}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for number, (patient, effusion, view) in enumerate(rows):
            relative = f"{root.name}/{split}/patient{patient:05d}/study1/view1_{view.lower()}.dcm"
            level = 160 if effusion == "1.0" else 60
            picture = np.full((40, 36), level, np.uint8)
            picture[::4] = 20  # some structure
            write_radiograph_dicom(root.parent / relative, picture,
                                   dicom_id=f"{split}{number}", subject_id=patient,
                                   study_id=1, view="PA", compression="rle")
            writer.writerow({"Path": relative, "Sex": "Female", "Age": "60",
                             "Frontal/Lateral": view, "AP/PA": "PA" if view == "Frontal" else "",
                             "Cardiomegaly": "", "Pleural Effusion": effusion, "Site": "A"})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "CheXpert-v1.0-dcm"
    root.mkdir()
    train = [(p, "1.0" if p % 2 else "0.0", "Frontal") for p in range(1, 13)]
    train += [(13, "-1.0", "Frontal"), (14, "1.0", "Lateral")]
    _write_split(root, "train", train)
    _write_split(root, "valid", [(100 + p, "1.0" if p % 2 else "", "Frontal")
                                 for p in range(6)])
    return root


def test_rows_become_samples_with_labels_masks_and_drops(folder, caplog):
    (folder.parent / folder.name / "train/patient00012/study1/view1_frontal.dcm").rename(
        folder / "moved.dcm")
    try:
        dataset = DATASETS.build(dict(type="ChexpertDataset", data_root=str(folder),
                                      split="train", uncertainty="ignore"))
    finally:
        (folder / "moved.dcm").rename(folder / "train/patient00012/study1/view1_frontal.dcm")
    assert dataset.metainfo["classes"] == ("Cardiomegaly", "Pleural Effusion")
    assert len(dataset) == 12  # 14 rows - the lateral - the missing image
    assert dataset.dropped == {"lateral_view": 1, "missing_image": 1}
    assert "patient00012" in caplog.text
    first = dataset.get_data_info(0)
    assert first["img_path"].endswith("train/patient00001/study1/view1_frontal.dcm")
    assert first["study_id"].startswith("CheXpert-v1.0-dcm/train/patient00001")
    np.testing.assert_array_equal(first["labels"], [0.0, 1.0])  # empty -> 0 (not mentioned)
    uncertain = dataset.get_data_info(11)
    assert math.isnan(uncertain["labels"][1]) and uncertain["label_mask"][1] == 0


def test_the_dicom_folder_feeds_the_linear_probe(folder):
    class MeanBrightness(torch.nn.Module):
        def extract_image_features(self, images, projected=False):
            """(B, 1, H, W) -> (B, 2): mean and spread of each image."""
            return torch.stack([images.mean((1, 2, 3)), images.std((1, 2, 3))], dim=1)

    transform = build_cxr_transforms(False, image_size=32, crop_size=32)
    features = {}
    for split in ("train", "validate"):
        dataset = ChexpertDataset(str(folder), split, labels=["Pleural Effusion"],
                                  pipeline=[transform], test_mode=True)
        features[split] = extract_features(MeanBrightness(), dataset, batch_size=4,
                                           progress=False)
    (tx, ty, tm, _), (vx, vy, vm, ids) = features["train"], features["validate"]
    assert tx.shape == (13, 2) and vx.shape == (6, 2) and len(ids) == 6
    table = run_linear_probe(tx, ty, tm, vx, vy, vm, label_names=["Pleural Effusion"],
                             fractions=[1.0], seeds=[0])
    assert table["results"]["1.0"]["per_label"]["Pleural Effusion"]["mean"] == 1.0


def test_csv_without_labels_and_unreadable_images_are_named(folder, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Path,Site\na.dcm,A\n")
    with pytest.raises(ValueError, match=r"bad\.csv: a CheXpert-style CSV needs"):
        ChexpertDataset(str(tmp_path), ann_file=str(bad))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a dicom")
    (tmp_path / "one.csv").write_text("Path,Pneumonia\nbroken.dcm,1\n")
    dataset = ChexpertDataset(str(tmp_path), ann_file="one.csv",
                              pipeline=[build_cxr_transforms(False)])
    assert dataset.prepare_data(0) is None and dataset.skipped == {"unreadable_image": 1}
    dataset.test_mode = True
    with pytest.raises(ImageLoadError, match=r"broken\.dcm: not a readable DICOM"):
        dataset.prepare_data(0)
