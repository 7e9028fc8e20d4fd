"""TimeSeriesDataPreprocessor: the batch contract -> the encoder's generic inputs."""
import torch

from interlace.domains.remote_sensing.models import TimeSeriesDataPreprocessor

from .synthetic_batch import make_batch


def test_batch_keys_become_named_streams():
    data = make_batch(high_res=True)
    out = TimeSeriesDataPreprocessor()(data)
    inputs = out["inputs"]
    assert set(inputs["series"]) == {"optical", "sar"}
    assert inputs["series"]["optical"].shape == (2, 4, 10, 16, 16)
    assert torch.equal(inputs["day_of_year"]["sar"], data["inputs"]["s1_doy"])
    assert inputs["high_res"].shape == (2, 3, 32, 32) and inputs["high_res_present"].all()
    assert inputs["latlon"].shape == (2, 2)
    assert out["data_samples"] is data["data_samples"]


def test_absent_modality_is_zero_filled_and_flagged():
    data = make_batch()
    data["inputs"]["modality_flags"][1, 1] = False  # sample 1 has no S1
    inputs = TimeSeriesDataPreprocessor()(data)["inputs"]
    assert inputs["present"]["sar"].tolist() == [True, False]
    sar = inputs["series"]["sar"]
    assert sar[1].abs().sum() == 0 and sar[0].abs().sum() > 0


def test_non_finite_values_are_zeroed_and_marked_invalid():
    data = make_batch()
    data["inputs"]["s2"][0, 1, 3, 2, 5] = float("nan")
    inputs = TimeSeriesDataPreprocessor()(data)["inputs"]
    assert torch.isfinite(inputs["series"]["optical"]).all()
    assert not inputs["valid"]["optical"][0, 1, 2, 5]
    assert inputs["valid"]["optical"][0, 1, 2, 4]


def test_per_sample_lists_are_padded_with_padding_dates():
    full = make_batch()["inputs"]
    samples = [{k: v[i] for k, v in full.items()} for i in range(2)]
    samples[1] = dict(samples[1], s2=samples[1]["s2"][:2], s2_doy=samples[1]["s2_doy"][:2],
                      s2_valid=samples[1]["s2_valid"][:2])
    inputs = TimeSeriesDataPreprocessor()(dict(inputs=samples))["inputs"]
    assert inputs["series"]["optical"].shape == (2, 4, 10, 16, 16)
    assert inputs["day_of_year"]["optical"][1, 2:].tolist() == [0, 0]
    assert not inputs["valid"]["optical"][1, 2:].any()


def test_high_res_can_be_ignored():
    inputs = TimeSeriesDataPreprocessor(high_res_key=None)(make_batch(high_res=True))["inputs"]
    assert inputs["high_res"] is None
