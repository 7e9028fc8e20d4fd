"""Linear probe on frozen features: separable vs noise labels, subsampling, skipped
labels, the seeds summary, feature extraction and the probability CSV."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from interlace.domains.medical.evaluation import (extract_features, fit_linear_probe,
                                                  format_table, run_linear_probe,
                                                  select_labels, subsample_indices,
                                                  write_probabilities_csv)

NAMES = ["Separable", "Noise", "Constant"]


def _data(n: int, seed: int, dims: int = 16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dims)).astype(np.float32)
    separable = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    noise = (rng.random(n) < 0.4).astype(np.float32)
    constant = np.zeros(n, np.float32)
    y = np.stack([separable, noise, constant], axis=1)
    return x, y, np.ones_like(y)


@pytest.fixture(scope="module")
def split():
    return _data(1000, 0), _data(400, 1)


def test_separable_label_high_noise_label_chance(split):
    (tx, ty, tm), (vx, vy, vm) = split
    result = fit_linear_probe(tx, ty, tm, vx, vy, vm, fraction=1.0, seed=0, label_names=NAMES)
    assert result.auroc["Separable"] > 0.95
    assert 0.3 < result.auroc["Noise"] < 0.7
    assert math.isnan(result.auroc["Constant"])
    assert result.skipped == {"Constant": "single class in training subset"}
    assert result.mean_auroc == pytest.approx(
        (result.auroc["Separable"] + result.auroc["Noise"]) / 2)
    assert result.probabilities.shape == (400, 3)
    assert np.isnan(result.probabilities[:, 2]).all()
    assert ((result.probabilities[:, :2] >= 0) & (result.probabilities[:, :2] <= 1)).all()


def test_single_class_in_validation_is_skipped(split):
    (tx, ty, tm), (vx, vy, vm) = split
    vy = vy.copy()
    vy[:, 1] = 1.0
    result = fit_linear_probe(tx, ty, tm, vx, vy, vm, fraction=1.0, seed=0, label_names=NAMES)
    assert math.isnan(result.auroc["Noise"])
    assert result.skipped["Noise"] == "single class in validation"
    assert result.mean_auroc == pytest.approx(result.auroc["Separable"])
    kept, skipped = select_labels(ty, tm, vy, vm, NAMES)
    assert kept == ["Separable"]
    assert skipped == {"Noise": "single class in validation",
                       "Constant": "single class in training"}


@pytest.mark.parametrize("fraction, expected", [(0.01, 10), (0.1, 100), (0.5, 500), (1.0, 1000)])
def test_fraction_subsamples_the_right_number(split, fraction, expected):
    (tx, ty, tm), (vx, vy, vm) = split
    rows = subsample_indices(ty, tm, fraction, seed=3)
    assert len(rows) == expected == len(np.unique(rows))
    # Both classes of every label that has both are kept, even at 1 %.
    for k in (0, 1):
        assert 0 < ty[rows, k].sum() < expected
    result = fit_linear_probe(tx, ty, tm, vx, vy, vm, fraction=fraction, seed=3,
                              label_names=NAMES)
    assert result.num_train == expected
    assert np.array_equal(result.train_indices, rows)


def test_subsample_depends_on_seed_and_respects_mask():
    y = np.zeros((200, 1), np.float32)
    y[:3, 0] = 1.0
    mask = np.ones_like(y)
    mask[0, 0] = 0.0  # not usable: cannot be the positive that is kept
    a = subsample_indices(y, mask, 0.05, seed=0)
    b = subsample_indices(y, mask, 0.05, seed=1)
    assert len(a) == len(b) == 10
    assert not np.array_equal(a, b)
    for rows in (a, b):
        assert y[rows[rows != 0], 0].sum() >= 1
    with pytest.raises(ValueError):
        subsample_indices(y, mask, 0.0, seed=0)


def test_run_linear_probe_mean_std_over_seeds(split):
    (tx, ty, tm), (vx, vy, vm) = split
    table = run_linear_probe(tx, ty, tm, vx, vy, vm, label_names=NAMES,
                             fractions=(0.05, 1.0), seeds=(0, 1, 2))
    assert table["labels"] == NAMES and table["seeds"] == [0, 1, 2]
    assert list(table["results"]) == ["0.05", "1.0"]
    for key, result in table["results"].items():
        assert result["num_train"] == ([50] * 3 if key == "0.05" else [1000] * 3)
        sep = result["per_label"]["Separable"]
        assert len(sep["values"]) == 3
        assert sep["mean"] == pytest.approx(np.mean(sep["values"]))
        assert sep["std"] == pytest.approx(np.std(sep["values"]))
        assert math.isnan(result["per_label"]["Constant"]["mean"])
        assert len(result["mean_auroc"]["values"]) == 3
        assert table["skipped"][key] == {"Constant": "single class in training subset"}
    # All the training set: the seeds differ only in the solver seed.
    assert table["results"]["1.0"]["per_label"]["Separable"]["std"] < 1e-6
    assert table["results"]["1.0"]["per_label"]["Separable"]["mean"] > 0.95
    text = format_table(table)
    assert "Separable" in text and "n/a" in text and "±" in text and "100 %" in text


class _Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def extract_image_features(self, images, projected=False):
        assert not self.training and not torch.is_grad_enabled()
        return self.linear(images.flatten(1))


def test_extract_features_batches_and_skips_unreadable():
    samples = [dict(img=torch.full((1, 2, 2), float(i)), labels=np.array([i % 2, 0.0]),
                    label_mask=np.ones(2), study_id=100 + i) for i in range(7)]

    class Data:
        def __len__(self):
            return len(samples)

        def prepare_data(self, index):
            return None if index == 3 else samples[index]

    model = _Encoder().train()
    feats, labels, mask, ids = extract_features(model, Data(), batch_size=2, progress=False)
    assert model.training  # mode restored
    assert feats.shape == (6, 3) and feats.dtype == np.float32
    assert labels.shape == mask.shape == (6, 2)
    assert ids == [100, 101, 102, 104, 105, 106]
    with torch.no_grad():
        expected = model.linear(torch.full((1, 4), 5.0)).numpy()
    np.testing.assert_allclose(feats[4], expected[0], rtol=1e-6)


def test_probability_csv_round_trip_and_atomic(tmp_path):
    rng = np.random.default_rng(0)
    probabilities = rng.random((5, 3))
    probabilities[2, 1] = np.nan
    ids = [50000011, 50000048, 50000085, 50000122, 50000159]
    path = write_probabilities_csv(tmp_path / "out" / "probs.csv", ids, probabilities,
                                   ["A", "B C", "D"])
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["study_id", "A", "B C", "D"]
    assert [int(r[0]) for r in rows[1:]] == ids
    for row, expected in zip(rows[1:], probabilities):
        values = [float(v) if v else np.nan for v in row[1:]]
        np.testing.assert_array_equal(values, expected)
    assert sorted(p.name for p in path.parent.iterdir()) == ["probs.csv"]
    with pytest.raises(ValueError):
        write_probabilities_csv(path, ids[:2], probabilities, ["A", "B C", "D"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["probs.csv"]
