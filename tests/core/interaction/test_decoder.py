"""PredictiveInteractionDecoder: refinement on a toy problem, unseen queries, gradients,
look-forward-twice, config build."""

import pytest
import torch
from torch import nn

from interlace.core.engine.registry import MODELS
from interlace.core.interaction.correspondence import Correspondence, Footprint
from interlace.core.interaction.decoder import PredictiveInteractionDecoder
from interlace.core.interaction.decoder_layer import PredictiveInteractionDecoderLayer
from interlace.core.interaction.footprint_sampling import sample_footprint_on_map
from interlace.core.interaction.streams import Gathered, StreamFeatures


class IdentityGridCorrespondence(Correspondence):
    """Test-only: stream B is co-registered with A (V views of the same grid); a view
    sees a query when ``visible(b, q, v)`` says so (default: always)."""

    def __init__(self, visible=None):
        self.visible = visible

    def gather_b_for_a(self, a, b):  # pragma: no cover - not used by the decoder
        raise NotImplementedError

    def gather_a_for_b(self, a, b):  # pragma: no cover
        raise NotImplementedError

    def gather_footprint(self, footprint, b, grid_size=7):
        bsz, q = footprint.batch_size, footprint.num_queries
        v = b.num_views
        level = b.levels[0].view(bsz, v, *b.levels[0].shape[1:])
        per_view = torch.stack([sample_footprint_on_map(level[:, k], footprint, grid_size)
                                for k in range(v)], dim=2)  # (B, Q, V, S, C)
        mask = (torch.ones(bsz, q, v, dtype=torch.bool) if self.visible is None
                else self.visible(bsz, q, v))
        s = grid_size * grid_size
        values = per_view[mask].reshape(-1, per_view.shape[-1])  # blocks of S per view
        query = torch.arange(bsz * q).view(bsz, q, 1).expand(bsz, q, v)[mask]
        return Gathered(values=values, query_index=query.repeat_interleave(s),
                        num_queries_per_sample=q, batch_size=bsz)


def _small(**kw):
    cfg = dict(num_classes=2, heads=dict(center=2, dim=3, rot=2), embed_dims=16, num_heads=4,
               num_queries=5, grid_size=3, ffn_dims=32, dynamic_dims=8,
               default_footprint_size=0.3)
    cfg.update(kw)
    return PredictiveInteractionDecoder(**cfg)


def _moving(decoder):
    """Non-zero centre heads: they start at zero on purpose (no move at step 0), which
    would make positions equal across layers and block the gradient to their hidden
    layer on the first step."""
    with torch.no_grad():
        for heads in decoder.heads:
            heads["center"][-1].weight.normal_(0, 0.05)
    return decoder


def _streams(bsz=2, c_a=16, c_b=16, views=2, h=8, w=8, present=None):
    a = StreamFeatures(levels=[torch.randn(bsz, c_a, h, w, requires_grad=True)])
    b = StreamFeatures(levels=[torch.randn(bsz * views, c_b, h, w, requires_grad=True)],
                       num_views=views, present=present)
    return a, b


# --- toy refinement ------------------------------------------------------------------
MAP = 16


def _toy_batch(bsz, gen):
    """Four spots per map (one per quadrant) at sub-cell positions; the heatmap's peaks
    sit 1-2 cells off each spot. Returns image (B,1,16,16), heatmap, spot centres in
    cell units (B,4,2) and each spot's peak cell index (B,4)."""
    quad = torch.tensor([[0, 0], [8, 0], [0, 8], [8, 8]], dtype=torch.float32)
    centres = quad + 2.5 + 3.0 * torch.rand(bsz, 4, 2, generator=gen)  # (x, y) in cells
    offsets = torch.randint(-2, 3, (bsz, 4, 2), generator=gen)
    zero = (offsets == 0).all(-1)
    offsets[..., 0][zero] = 1 + torch.randint(0, 2, (int(zero.sum()),), generator=gen)
    peak = centres.floor().long() + offsets
    grid = torch.arange(MAP, dtype=torch.float32) + 0.5
    dx = grid.view(1, 1, 1, MAP) - centres[..., 0].view(bsz, 4, 1, 1)
    dy = grid.view(1, 1, MAP, 1) - centres[..., 1].view(bsz, 4, 1, 1)
    image = torch.exp(-(dx ** 2 + dy ** 2) / 2.0).amax(1, keepdim=True)
    heatmap = torch.full((bsz, 1, MAP, MAP), -10.0)
    flat = peak[..., 1] * MAP + peak[..., 0]
    heatmap.view(bsz, -1).scatter_(1, flat, 10.0)
    return image, heatmap, centres, flat


def _targets(out, centres, flat):
    """Centre (normalised) of the spot each query started next to."""
    idx = (flat.unsqueeze(1) == _init_flat(out).unsqueeze(2)).float().argmax(-1)  # (B, Q)
    return torch.gather(centres, 1, idx.unsqueeze(-1).expand(-1, -1, 2)) / MAP


def _init_flat(out):
    pos = out.init_positions * MAP - 0.5
    return pos[..., 1].round().long() * MAP + pos[..., 0].round().long()


STEPS = 150  # optimiser steps of the toy training run


@pytest.mark.slow  # trains to a target: kept out of the default run
def test_decoder_refines_positions_on_toy_problem():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    c = 32
    stem_a = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
    stem_b = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
    decoder = PredictiveInteractionDecoder(
        num_classes=1, heads=dict(center=2), embed_dims=c, num_heads=4, num_queries=4,
        ffn_dims=64, dynamic_dims=16, default_footprint_size=0.1, enlarge_a=2.0,
        enlarge_b=2.0, heatmap_head=False)
    corr = IdentityGridCorrespondence()
    params = [*stem_a.parameters(), *stem_b.parameters(), *decoder.parameters()]
    optim = torch.optim.Adam(params, lr=2e-3)
    # Linear decay to 0: with a constant rate the sub-cell residuals of the later layers
    # keep bouncing and can end above the first layer's error.
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: 1.0 - step / STEPS)

    def run(bsz):
        image, heatmap, centres, flat = _toy_batch(bsz, gen)
        out = decoder(StreamFeatures(levels=[stem_a(image)]),
                      StreamFeatures(levels=[stem_b(image)]), corr, heatmap=heatmap)
        target = _targets(out, centres, flat)
        errors = [(layer["position"] - target).norm(dim=-1).mul(MAP).mean() for layer in out]
        initial = (out.init_positions - target).norm(dim=-1).mul(MAP).mean()
        return errors, initial

    for step in range(STEPS):
        errors, _ = run(16)
        optim.zero_grad()
        sum(errors).backward()
        optim.step()
        sched.step()
    with torch.no_grad():
        errors, initial = run(64)
    errors = [float(e) for e in errors]
    print(f"toy refinement: initial {float(initial):.3f} cells, per layer {[round(e, 3) for e in errors]}")
    assert float(initial) > 1.0, errors  # queries start 1-2 cells off
    assert errors[-1] < 0.3 * float(initial), errors
    # Deeper is better on average: the last layer beats the first, and so do the later
    # layers taken together.
    assert errors[-1] < errors[0], errors
    assert sum(errors[1:]) / len(errors[1:]) < errors[0], errors


# --- unseen queries --------------------------------------------------------------------
def _odd_queries_unseen(bsz, q, v):
    """Even queries seen by view 0 (and view 1 for query 0); odd queries by none."""
    mask = torch.zeros(bsz, q, v, dtype=torch.bool)
    mask[:, 0::2, 0] = True
    mask[:, 0, 1] = True
    return mask


def _assert_copied(previous, layer, unseen):
    for key, value in layer.items():
        if key == "seen":
            continue
        assert torch.equal(value[unseen], previous[key][unseen]), key
        assert not torch.equal(value[~unseen], previous[key][~unseen]), key


@pytest.mark.parametrize("update", ["dynamic_conv", "attention"])
def test_unseen_queries_keep_previous_predictions(update):
    decoder = _moving(_small(update=update))
    a, b = _streams()
    out = decoder(a, b, IdentityGridCorrespondence(_odd_queries_unseen))
    unseen = torch.zeros(2, 5, dtype=torch.bool)
    unseen[:, 1::2] = True
    for index, stream in enumerate(decoder.layer_streams):
        seen = out[index]["seen"]
        assert seen.shape == (2, 5) and seen.dtype == torch.bool
        if stream == "a":
            assert seen.all()
        else:
            assert torch.equal(seen, ~unseen)
            _assert_copied(out[index - 1], out[index], unseen)


def test_absent_b_leaves_queries_unchanged():
    decoder = _moving(_small())
    a, b = _streams(present=torch.tensor([True, False]))
    out = decoder(a, b, IdentityGridCorrespondence())
    absent = torch.tensor([[False] * 5, [True] * 5])
    for index, stream in enumerate(decoder.layer_streams):
        if stream == "b":
            assert torch.equal(out[index]["seen"], ~absent)
            _assert_copied(out[index - 1], out[index], absent)
    no_b = decoder(a, None, None)
    for index, stream in enumerate(decoder.layer_streams):
        if stream == "b":
            assert not no_b[index]["seen"].any()
            for key in ("center", "dim", "heatmap", "position"):
                assert torch.equal(no_b[index][key], no_b[index - 1][key])


def test_layer_keeps_unseen_features_and_pairs_match_dense():
    torch.manual_seed(1)
    layer = PredictiveInteractionDecoderLayer(embed_dims=16, num_heads=4, ffn_dims=32,
                                              grid_size=3, dynamic_dims=8)
    query, pos = torch.randn(2, 4, 16), torch.rand(2, 4, 2)
    roi = torch.randn(2, 4, 9, 16)
    dense, seen = layer(query, pos, roi)
    assert seen.all()
    # Same samples as pairs from two identical views: the per-view average equals the
    # dense block, so the outputs match.
    values = roi.unsqueeze(2).expand(2, 4, 2, 9, 16).reshape(-1, 16)
    index = torch.arange(8).repeat_interleave(18)
    pairs = Gathered(values=values, query_index=index, num_queries_per_sample=4, batch_size=2)
    out, seen = layer(query, pos, pairs)
    assert seen.all() and torch.allclose(out, dense, atol=1e-5)
    # Drop query 1 of sample 0 and query 3 of sample 1: they come back unchanged.
    keep = (index != 1) & (index != 7)
    partial = Gathered(values=values[keep], query_index=index[keep], num_queries_per_sample=4,
                       batch_size=2)
    out, seen = layer(query, pos, partial)
    assert not seen[0, 1] and not seen[1, 3] and int(seen.sum()) == 6
    assert torch.equal(out[0, 1], query[0, 1]) and torch.equal(out[1, 3], query[1, 3])
    assert not torch.allclose(out[seen], query[seen])
    with pytest.raises(ValueError, match="multiple of grid_size"):
        layer(query, pos, Gathered(values=values[:5], query_index=index[:5],
                                   num_queries_per_sample=4, batch_size=2))


# --- gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("update", ["dynamic_conv", "attention"])
def test_gradients_reach_features_and_every_parameter(update):
    decoder = _moving(_small(update=update, in_channels=12, b_channels=10,
                             heads=dict(center=2, dim=3)))
    a, b = _streams(c_a=12, c_b=10)
    out = decoder(a, b, IdentityGridCorrespondence())
    loss = out.heatmap.sum() + out.scores.sum()
    for layer in out:
        loss = loss + sum(v.float().pow(2).sum() for k, v in layer.items() if k != "seen")
    loss.backward()
    assert a.levels[0].grad.abs().sum() > 0
    assert b.levels[0].grad.abs().sum() > 0
    missing = [name for name, p in decoder.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("enabled", [False, True])
def test_look_forward_twice_reaches_previous_delta_head(enabled):
    decoder = _small(look_forward_twice=enabled, layer_streams=("a", "b", "a"))
    a, b = _streams()
    out = decoder(a, b, IdentityGridCorrespondence())
    out[-1]["position"].sum().backward()
    previous = decoder.heads[-2]["center"][-1].weight.grad
    reached = previous is not None and bool(previous.abs().sum() > 0)
    assert reached == enabled
    assert decoder.heads[-1]["center"][-1].weight.grad.abs().sum() > 0
    older = decoder.heads[-3]["center"][-1].weight.grad  # two layers back: never
    assert older is None or not older.abs().sum() > 0


# --- config ----------------------------------------------------------------------------
def box_footprint(predictions, positions):
    """Driving-style footprint: size from 'dim' (log), yaw from 'rot' (sin, cos)."""
    box_footprint.calls.append(sorted(predictions))
    size = predictions["dim"][..., :2].exp().clamp(max=4.0) * 0.1
    yaw = torch.atan2(predictions["rot"][..., 0], predictions["rot"][..., 1])
    return Footprint(center=positions, size=size, yaw=yaw)


box_footprint.calls = []


def test_builds_from_config_and_uses_footprint_fn():
    box_footprint.calls.clear()
    decoder = MODELS.build(dict(
        type="PredictiveInteractionDecoder", num_classes=3,
        heads=dict(center=2, height=1, dim=3, rot=2, vel=2), embed_dims=16, num_heads=4,
        num_queries=6, grid_size=3, ffn_dims=32, dynamic_dims=8, footprint_fn=box_footprint,
        class_kernel_sizes={2: 1}, update="attention"))
    assert isinstance(decoder, PredictiveInteractionDecoder)
    a, b = _streams(views=3)
    out = decoder(a, b, IdentityGridCorrespondence())
    assert len(out) == 5 and out.class_ids.shape == (2, 6) and out.scores.shape == (2, 6)
    sizes = dict(center=2, height=1, dim=3, rot=2, vel=2, heatmap=3, position=2)
    for layer in out:
        for name, size in sizes.items():
            assert layer[name].shape == (2, 6, size), name
        assert layer["seen"].shape == (2, 6)
    # Called for every layer after the first, with the previous layer's predictions.
    assert len(box_footprint.calls) == 4
    assert "dim" in box_footprint.calls[0] and "rot" in box_footprint.calls[0]
    with pytest.raises(ValueError, match="reserved"):
        MODELS.build(dict(type="PredictiveInteractionDecoder", num_classes=1,
                          heads=dict(heatmap=2)))
