import pytest
import torch
from mmengine.structures import BaseDataElement

from interlace.core.engine.registry import HOOKS
from interlace.domains.medical.models import MGCA, PrototypeFreezeHook, collate_image_reports

from .conftest import REPORTS, TINY_BERT


def _model(tokenizer, loss_weights=None, image_encoder=None):
    return MGCA(
        image_encoder=image_encoder or dict(type="ResNetImageEncoder", depth=18),
        text_encoder=dict(type="ReportTextEncoder", config=TINY_BERT, num_layers=2,
                          tokenizer=tokenizer),
        embed_dims=16, hidden_dims=32,
        prototype_loss=dict(type="PrototypeAlignmentLoss", num_prototypes=8),
        loss_weights=loss_weights)


def _batch(size=8, image_size=32, generator=None):
    """Images whose bright quadrant says which of the 4 report templates they go with."""
    templates = torch.arange(size) % len(REPORTS)
    images = 0.1 * torch.randn(size, 1, image_size, image_size, generator=generator)
    half = image_size // 2
    for i, t in enumerate(templates.tolist()):
        row, col = divmod(t, 2)
        images[i, :, row * half:(row + 1) * half, col * half:(col + 1) * half] += 1.0
    return images, [dict(report=REPORTS[t]) for t in templates.tolist()]


def test_loss_mode_returns_the_three_losses_and_trains_both_encoders(tokenizer):
    model = _model(tokenizer)
    images, samples = _batch()
    losses = model(images, samples, mode="loss")
    assert set(losses) == {"loss_instance", "loss_token", "loss_prototype"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.image_encoder.resnet.conv1.weight.grad.abs().sum() > 0
    assert model.text_encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.image_local_proj.layers[0].weight.grad.abs().sum() > 0


def test_vit_variant_and_data_elements_work(tokenizer):
    vit = dict(type="ViTImageEncoder", img_size=32, patch_size=8, hidden_size=32,
               num_layers=2, num_heads=2)
    model = _model(tokenizer, image_encoder=vit)
    images, samples = _batch(size=4)
    elements = [BaseDataElement(metainfo=dict(report=s["report"])) for s in samples]
    losses = model(list(images), elements, mode="loss")
    assert set(losses) == {"loss_instance", "loss_token", "loss_prototype"}


def test_zero_weights_skip_losses_entirely(tokenizer):
    model = _model(tokenizer, loss_weights=dict(instance=1.0, token=0.0, prototype=0.0))
    assert model.token_loss is None and model.prototype_loss is None
    assert model.image_local_proj is None
    images, samples = _batch(size=4)
    assert set(model(images, samples, mode="loss")) == {"loss_instance"}


def test_local_matching_is_off_by_default_and_shares_the_token_heads(tokenizer):
    assert _model(tokenizer).local_matching_loss is None  # the published MGCA
    model = _model(tokenizer, loss_weights=dict(token=0.0, prototype=0.0, local_matching=0.5))
    assert model.token_loss is None and model.image_local_proj is not None
    images, samples = _batch(size=4)
    losses = model(images, samples, mode="loss")
    assert set(losses) == {"loss_instance", "loss_local_matching"}
    losses["loss_local_matching"].backward()
    assert model.image_local_proj.layers[0].weight.grad.abs().sum() > 0
    assert model.word_local_proj.layers[0].weight.grad.abs().sum() > 0
    assert model.image_encoder.resnet.conv1.weight.grad.abs().sum() > 0


def test_unknown_loss_weight_is_rejected(tokenizer):
    with pytest.raises(KeyError, match="unknown loss weights"):
        _model(tokenizer, loss_weights=dict(instanse=1.0))


def test_tensor_mode_gives_normalised_embeddings(tokenizer):
    model = _model(tokenizer).eval()
    images, samples = _batch(size=4)
    with torch.no_grad():
        out = model(images, samples, mode="predict")
        image_only = model(images, mode="tensor")
        features = model.extract_image_features(images)
    assert out["image_global"].shape == out["report_global"].shape == (4, 16)
    assert torch.allclose(out["image_global"].norm(dim=-1), torch.ones(4), atol=1e-5)
    assert set(image_only) == {"image_global"}
    assert features.shape == (4, 512)  # the backbone feature a linear probe uses


def test_data_preprocessor_stacks_collated_samples(tokenizer):
    model = _model(tokenizer)
    images, samples = _batch(size=4)
    batch = dict(img=list(images), report=[s["report"] for s in samples], study_id=[1, 2, 3, 4])
    data = model.data_preprocessor(batch, training=True)
    assert data["inputs"].shape == (4, 1, 32, 32)
    assert data["data_samples"][2] == dict(report=samples[2]["report"], study_id=3)
    losses = model.train_step(batch, _optim_wrapper(model))
    assert set(losses) == {"loss", "loss_instance", "loss_token", "loss_prototype"}


def test_collate_keeps_variable_length_sentence_lists():
    samples = [dict(img=torch.zeros(1, 4, 4), sentences=["a", "b"]),
               dict(img=torch.ones(1, 4, 4), sentences=["c"])]
    batch = collate_image_reports(samples)
    assert batch["sentences"] == [["a", "b"], ["c"]]
    assert len(batch["img"]) == 2


def _optim_wrapper(model):
    from mmengine.optim import OptimWrapper
    return OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))


def test_short_training_run_lowers_the_loss(tokenizer):
    model = _model(tokenizer)
    model.set_epoch(1)  # prototypes trainable
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    totals = []
    for _ in range(30):
        images, samples = _batch(generator=generator)
        loss = sum(model(images, samples, mode="loss").values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < 0.5 * first, totals


class _Runner:
    def __init__(self, model, epoch):
        self.model, self.epoch = model, epoch


def test_prototype_freeze_hook_freezes_prototypes_in_the_first_epoch_only(tokenizer):
    model = _model(tokenizer)
    hook = HOOKS.build(dict(type="PrototypeFreezeHook"))
    assert isinstance(hook, PrototypeFreezeHook)
    images, samples = _batch(size=8)
    prototypes = model.prototype_loss.prototypes.weight

    hook.before_train_epoch(_Runner(model, epoch=0))
    assert model.prototype_loss.frozen
    model(images, samples, mode="loss")["loss_prototype"].backward()
    assert prototypes.grad is None

    hook.before_train_epoch(_Runner(model, epoch=1))
    assert not model.prototype_loss.frozen
    model(images, samples, mode="loss")["loss_prototype"].backward()
    assert prototypes.grad is not None and prototypes.grad.abs().sum() > 0
