"""CheXpert label CSV: uncertainty policies and column checks on a hand-written file."""
import math

import numpy as np
import pytest

from interlace.domains.medical.data.chexpert import (CHEXPERT_LABELS, LabelFileError,
                                                     read_chexpert_csv)

HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)


def _row(path: str, view: str, projection: str, **values: str) -> str:
    cells = [values.get(name.replace(" ", "_"), "") for name in CHEXPERT_LABELS]
    return f"{path},Female,68,{view},{projection}," + ",".join(cells)


@pytest.fixture
def train_csv(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("\n".join([
        HEADER,
        _row("CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP",
             Cardiomegaly="-1.0", Edema="1.0", Pleural_Effusion="0.0"),
        _row("CheXpert-v1.0/train/patient00002/study1/view2_lateral.jpg", "Lateral", "",
             No_Finding="1.0"),
    ]) + "\n")
    return path


def _column(name: str) -> int:
    return CHEXPERT_LABELS.index(name)


@pytest.mark.parametrize("policy, expected", [("ones", 1.0), ("zeros", 0.0)])
def test_uncertain_labels_follow_ones_and_zeros_policies(train_csv, policy, expected):
    first = read_chexpert_csv(train_csv, policy)[0]
    assert first.labels[_column("Cardiomegaly")] == expected
    assert first.labels[_column("Edema")] == 1.0
    assert first.labels[_column("Pleural Effusion")] == 0.0
    assert first.labels[_column("Atelectasis")] == 0.0   # not mentioned -> negative
    assert first.mask.tolist() == [1.0] * 14
    assert first.raw[_column("Cardiomegaly")] == -1.0 and math.isnan(first.raw[0])


def test_ignore_policy_masks_uncertain_labels(train_csv):
    first, second = read_chexpert_csv(train_csv, "ignore")
    cardio = _column("Cardiomegaly")
    assert math.isnan(first.labels[cardio]) and first.mask[cardio] == 0.0
    assert first.mask.sum() == 13
    assert second.mask.sum() == 14 and second.labels[_column("No Finding")] == 1.0
    assert (first.path.endswith("view1_frontal.jpg"), first.view, first.projection,
            first.age) == (True, "Frontal", "AP", 68.0)


def test_subset_of_labels_in_the_given_order(train_csv):
    five = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    first = read_chexpert_csv(train_csv, "zeros", labels=five)[0]
    np.testing.assert_array_equal(first.labels, [0, 0, 0, 1, 0])


def test_unknown_columns_are_named_with_the_file(tmp_path):
    path = tmp_path / "valid.csv"
    path.write_text(HEADER + ",Hospital,Scanner\n" + _row("a.jpg", "Frontal", "PA") + ",x,y\n")
    with pytest.raises(LabelFileError) as error:
        read_chexpert_csv(path)
    message = str(error.value)
    assert str(path) in message and "'Hospital'" in message and "'Scanner'" in message
    assert len(read_chexpert_csv(path, allow_extra_columns=True)) == 1


def test_bad_values_and_policies_are_reported(tmp_path, train_csv):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "\n" + _row("a.jpg", "Frontal", "PA", Edema="2") + "\n")
    with pytest.raises(LabelFileError, match=r"bad\.csv:2 column 'Edema'"):
        read_chexpert_csv(path)
    with pytest.raises(ValueError, match="policy"):
        read_chexpert_csv(train_csv, "maybe")
    missing = tmp_path / "missing_label.csv"
    missing.write_text("Path,Sex,Age,Frontal/Lateral,AP/PA,Edema\na.jpg,F,1,Frontal,PA,1\n")
    with pytest.raises(LabelFileError, match="missing columns"):
        read_chexpert_csv(missing)
