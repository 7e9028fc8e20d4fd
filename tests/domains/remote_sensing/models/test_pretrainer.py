"""SkySensePretrainer: a step gives every term, finite; loss decreases; teacher frozen."""
import torch
from mmengine.optim import OptimWrapper

from interlace.core.engine.registry import MODELS

from .synthetic_batch import encoder_config, make_batch


def _pretrainer(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type="SkySensePretrainer", encoder=encoder_config(), projection_dims=16,
               crop_size=12, min_overlap=3, num_view_dates=3, view_seed=0,
               object_loss=dict(num_prototypes=4),
               geo_prototypes=dict(type="GeoContextPrototypes", num_prototypes=4))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_loss_has_every_term_for_every_branch_and_is_finite():
    model = _pretrainer()
    data = model.data_preprocessor(make_batch(), training=True)
    losses = model(**data, mode="loss")
    for branch in ("optical", "sar", "fused"):
        for term in ("pixel", "object", "image"):
            assert torch.isfinite(losses[f"loss_{term}_{branch}"])
    assert torch.isfinite(losses["loss_cross_modal_optical_sar"])


def test_weight_zero_removes_a_term():
    model = _pretrainer(loss_weights=dict(object=0.0, cross_modal=0.0))
    losses = model(**model.data_preprocessor(make_batch()), mode="loss")
    assert not any("object" in k or "cross_modal" in k for k in losses)
    assert model.object_losses is None


def test_student_gets_gradients_teacher_does_not():
    model = _pretrainer()
    losses = model(**model.data_preprocessor(make_batch()), mode="loss")
    sum(losses.values()).backward()
    for name in ("optical", "sar"):
        assert model.encoder.backbones[name].layers[0][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher_encoder.parameters())
    assert all(p.grad is None for p in model.teacher_projectors.parameters())


def test_training_steps_reduce_the_loss_and_move_the_geo_bank():
    model = _pretrainer()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=3e-3))
    data = make_batch(batch=4)
    bank = model.geo_prototypes.bank.clone()
    totals = []
    for _ in range(6):
        model.view_sampler.generator.manual_seed(0)  # the same views: a fixed objective
        totals.append(model.train_step(data, optim)["loss"].item())
        model.update_teacher(0.9)
    assert all(torch.isfinite(torch.tensor(totals)))
    assert totals[-1] < totals[0]
    assert not torch.equal(model.geo_prototypes.bank, bank)


def test_teacher_starts_equal_and_follows_the_student():
    model = _pretrainer()
    student = model.encoder.fusion.extra_token
    teacher = model.teacher_encoder.fusion.extra_token
    assert torch.equal(student, teacher)
    with torch.no_grad():
        student.add_(1.0)
    model.update_teacher(0.75)
    assert torch.allclose(teacher, student - 0.75)


def test_tensor_mode_returns_the_fused_map_of_the_whole_chip():
    model = _pretrainer().eval()
    out = model(**model.data_preprocessor(make_batch()), mode="tensor")
    assert out["fused"].shape == (2, 16, 8, 8)
