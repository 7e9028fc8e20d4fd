"""SkySenseSegmentor / SkySenseClassifier: training, prediction, dropped modalities."""
import pytest
import torch
from mmengine.optim import OptimWrapper

from interlace.core.engine.registry import MODELS

from .synthetic_batch import encoder_config, make_batch


def _segmentor(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type="SkySenseSegmentor", encoder=encoder_config(),
               head=dict(type="SegmentationHead", num_classes=4, hidden_dims=16, dropout=0.0))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_segmentation_training_reduces_the_loss():
    model = _segmentor(geo_prototypes=dict(type="GeoContextPrototypes", num_prototypes=4),
                       update_prototypes=True)
    assert model.head.in_channels == 32  # 2 x 16 with the geo context
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=5e-3))
    data = make_batch()
    losses = [model.train_step(data, optim)["loss_seg"].item() for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_ignored_pixels_do_not_count():
    model = _segmentor()
    data = make_batch()
    for sample in data["data_samples"]:
        sample.gt_sem_seg = torch.full((16, 16), 255, dtype=torch.long)
        sample.gt_sem_seg[0, 0] = 1
    inputs = model.data_preprocessor(data)
    loss = model(**inputs, mode="loss")["loss_seg"]
    logits = model(inputs["inputs"], mode="tensor")
    expected = torch.nn.functional.cross_entropy(logits[:, :, 0, 0], torch.tensor([1, 1]))
    assert torch.allclose(loss, expected, atol=1e-5)


def test_predict_gives_class_and_probabilities_at_input_size():
    model = _segmentor().eval()
    samples = model.test_step(make_batch())
    assert samples[0].pred_sem_seg.shape == (16, 16) and samples[0].pred_sem_seg.dtype == torch.long
    assert samples[0].seg_probs.shape == (4, 16, 16)
    assert torch.allclose(samples[0].seg_probs.sum(0), torch.ones(16, 16), atol=1e-5)
    assert torch.equal(samples[0].pred_sem_seg, samples[0].seg_probs.argmax(0))


def test_dropping_sar_equals_a_batch_without_sar():
    model = _segmentor().eval()
    inputs = model.data_preprocessor(make_batch())["inputs"]
    dropped = model(inputs, mode="tensor", drop_modalities=("sar",))
    optical_only = dict(inputs, series=dict(optical=inputs["series"]["optical"]),
                        day_of_year=dict(optical=inputs["day_of_year"]["optical"]))
    assert torch.allclose(dropped, model(optical_only, mode="tensor"), atol=1e-5)
    assert not torch.allclose(dropped, model(inputs, mode="tensor"), atol=1e-4)
    model.drop_modalities = ("sar",)  # the config option does the same
    assert torch.equal(model(inputs, mode="tensor"), dropped)


def test_dropping_an_unknown_modality_is_an_error():
    with pytest.raises(KeyError, match="lidar"):
        _segmentor(drop_modalities=("lidar",))


def test_scene_classifier_trains_and_predicts():
    torch.manual_seed(0)
    model = MODELS.build(dict(type="SkySenseClassifier", encoder=encoder_config(),
                              head=dict(type="SceneClassificationHead", num_classes=4)))
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=5e-3))
    data = make_batch(batch=4)
    losses = [model.train_step(data, optim)["loss_cls"].item() for _ in range(5)]
    assert losses[-1] < losses[0]
    samples = model.eval().test_step(data)
    assert samples[0].pred_score.shape == (4,) and 0 <= int(samples[0].pred_label) < 4


def test_pretrained_encoder_and_geo_bank_load_into_the_segmentor():
    geo = dict(type="GeoContextPrototypes", num_prototypes=4)
    pretrainer = MODELS.build(dict(type="SkySensePretrainer", encoder=encoder_config(),
                                   projection_dims=16, crop_size=12, geo_prototypes=geo))
    model = _segmentor(geo_prototypes=geo)
    result = model.load_state_dict(pretrainer.state_dict(), strict=False)
    # Everything the segmentor lacks is the head (and the attention that reads the bank).
    assert all(k.startswith(("head.", "geo_prototypes.query", "geo_prototypes.key",
                             "geo_prototypes.value")) for k in result.missing_keys)
    assert torch.equal(model.encoder.fusion.extra_token, pretrainer.encoder.fusion.extra_token)
    assert torch.equal(model.geo_prototypes.bank, pretrainer.geo_prototypes.bank)
