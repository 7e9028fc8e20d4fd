"""DualStreamEncoder and its layer: single-stream equivalence at zero cross scale, gradient
reach, missing streams, structure and padding, ray spreading's splat, config building.

The correspondences here are test-only stand-ins for the domain ones: an identity grid
(map <-> map at the same normalised position, with partial coverage and a ray layout)
and a dense one (every query with every non-padding position of the other stream)."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from interlace.core.engine.registry import MODELS
from interlace.core.interaction.correspondence import Correspondence, RayLayout
from interlace.core.interaction.encoder import DualStreamEncoder
from interlace.core.interaction.encoder_layer import DualStreamEncoderLayer
from interlace.core.interaction.spreading import RaySpreading
from interlace.core.interaction.streams import Gathered, StreamFeatures

C, HEADS = 16, 4
SHAPES = [(6, 8), (3, 4)]


class IdentityGridCorrespondence(Correspondence):
    """A query at normalised (x, y) pairs with the other stream's map at (x, y): A's
    queries with B's level 0 in each view, but with view 1 only where x < 0.6; B's
    queries with A's two levels, except where y > 0.8 (so 0, 1 or 2 keys per query).
    Ray layout: column u of view v samples A at x = (u + 0.5) / W along three depths;
    column 0 and one NaN sample are invalid."""

    def __init__(self, with_rays=True):
        self.with_rays = with_rays

    @staticmethod
    def _sample(other, refs):  # other level 0 (B*V, C, H, W), refs (S, 2) -> (B*V, S, C)
        grid = (refs * 2 - 1).to(other.dtype).view(1, -1, 1, 2).expand(other.shape[0], -1, -1, -1)
        return F.grid_sample(other, grid, align_corners=False).squeeze(-1).transpose(1, 2)

    def gather_b_for_a(self, a, b):
        refs = a.reference_points()
        batch, va, vb, s = a.batch_size, a.num_views, b.num_views, refs.shape[0]
        samples = self._sample(b.levels[0], refs).view(batch, vb, s, -1)
        bi, vai, si, vbi = torch.meshgrid(torch.arange(batch), torch.arange(va),
                                          torch.arange(s), torch.arange(vb), indexing="ij")
        keep = (vbi == 0) | (refs[si, 0] < 0.6)
        bi, vai, si, vbi = bi[keep], vai[keep], si[keep], vbi[keep]
        position = torch.cat([refs[si], vbi.unsqueeze(-1).float()], -1)
        return Gathered(samples[bi, vbi, si], bi * a.num_queries + vai * s + si,
                        a.num_queries, batch, position)

    def gather_a_for_b(self, a, b):
        refs = b.reference_points()
        batch, vb, s = b.batch_size, b.num_views, refs.shape[0]
        # Both of A's levels at the same position (view 0 of A): two keys per query.
        samples = torch.stack([self._sample(lvl, refs).view(batch, a.num_views, s, -1)[:, 0]
                               for lvl in a.levels[:2]], 1)  # (B, 2, S, C)
        bi, vbi, si, li = torch.meshgrid(torch.arange(batch), torch.arange(vb),
                                         torch.arange(s), torch.arange(2), indexing="ij")
        keep = refs[si, 1] < 0.8
        bi, vbi, si, li = bi[keep], vbi[keep], si[keep], li[keep]
        position = torch.cat([refs[si], li.unsqueeze(-1).float()], -1)
        return Gathered(samples[bi, li, si], bi * b.num_queries + vbi * s + si, b.num_queries,
                        batch, position)

    def gather_footprint(self, footprint, b, grid_size=7):
        raise NotImplementedError

    def ray_layout(self, a, b):
        if not self.with_rays:
            return None
        batch, views, width, depth = a.batch_size, b.num_views, b.levels[0].shape[-1], 3
        x = ((torch.arange(width) + 0.5) / width).view(1, 1, width, 1)
        x = x.expand(batch, views, -1, depth)
        y = torch.tensor([0.2, 0.5, 0.8]).view(1, 1, 1, depth).expand(batch, views, width, -1)
        y = torch.where(torch.arange(views).view(1, -1, 1, 1) == 1, 1 - y, y)
        points = torch.stack([x, y], -1).clone()
        valid = torch.ones(batch, views, width, depth, dtype=torch.bool)
        valid[:, :, 0] = False
        points[:, 0, 0, 0] = float("nan")  # invalid samples may carry garbage
        return RayLayout(level=0, a_points=points, valid=valid)


class AllPairsCorrespondence(Correspondence):
    """Every query pairs with every non-padding position of the other stream."""

    @staticmethod
    def _dense(query_stream, key_stream):
        keys = key_stream.flatten()
        batch, nq, nk = query_stream.batch_size, query_stream.num_queries, keys.shape[1]
        keep = torch.ones(batch, nq, nk, dtype=torch.bool)
        if key_stream.padding_mask is not None:
            keep &= ~key_stream.padding_mask.view(batch, 1, nk)
        bi, qi, ki = keep.nonzero(as_tuple=True)
        return Gathered(keys[bi, ki], bi * nq + qi, nq, batch)

    def gather_b_for_a(self, a, b):
        return self._dense(a, b)

    def gather_a_for_b(self, a, b):
        return self._dense(b, a)

    def gather_footprint(self, footprint, b, grid_size=7):
        raise NotImplementedError


def _maps(batch, views, dtype=torch.float64, present=None):
    return StreamFeatures(levels=[torch.randn(batch * views, C, h, w, dtype=dtype)
                                  for h, w in SHAPES], num_views=views, present=present,
                          meta=dict(tag="kept"))


def _tokens(batch, dtype=torch.float64, present=None):
    padding = torch.zeros(batch, 5, dtype=torch.bool)
    padding[0, 3:] = True
    padding[-1, 4:] = True
    return StreamFeatures(tokens=torch.randn(batch, 5, C, dtype=dtype), padding_mask=padding,
                          present=present)


# (name, stream-B factory, correspondence, layer kwargs)
SETUPS = {
    "maps_ray": (lambda n, **kw: _maps(n, 2, **kw), IdentityGridCorrespondence(),
                 dict(num_levels_b=2, spreading="ray", key_pos_dims_a=3, key_pos_dims_b=3)),
    "tokens_pooled": (lambda n, **kw: _tokens(n, **kw), AllPairsCorrespondence(),
                      dict(num_levels_b=0, spreading="pooled")),
}


def _layer(setup, **overrides):
    kwargs = dict(embed_dims=C, num_heads=HEADS, ffn_dims=32, num_levels_a=2, num_points=2,
                  **SETUPS[setup][2])
    kwargs.update(overrides)
    return DualStreamEncoderLayer(**kwargs).double()


def _single_stream_path(branch, feats):
    """Intra + FFN only, written out from the branch's modules."""
    x = feats.flatten()
    if feats.is_map:
        per_view = x.reshape(feats.batch_size * feats.num_views, -1, C)
        refs = feats.reference_points().double().expand(per_view.shape[0], -1, -1)
        sizes = torch.tensor([h * w for h, w in feats.spatial_shapes])
        pos = torch.repeat_interleave(branch.level_embed, sizes, dim=0).unsqueeze(0)
        residual = branch.intra(per_view, per_view, refs, feats.spatial_shapes,
                                identity=per_view, query_pos=pos).reshape(x.shape)
    else:
        residual = x + branch.intra(x, x, x, key_padding_mask=feats.padding_mask)[0]
    h = branch.norm1(residual)
    out = branch.norm2(h + branch.ffn(h))
    if feats.padding_mask is not None:
        out = torch.where(feats.padding_mask.unsqueeze(-1), x, out)
    return out


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_zero_cross_scale_gives_the_single_stream_path(setup):
    make_b, corr, _ = SETUPS[setup]
    layer = _layer(setup, cross_scale_init=0.0)
    a, b = _maps(2, 1), make_b(2)
    out_a, out_b = layer(a, b, corr)
    torch.testing.assert_close(out_a.flatten(), _single_stream_path(layer.branch_a, a))
    torch.testing.assert_close(out_b.flatten(), _single_stream_path(layer.branch_b, b))
    # ... and the interaction is not vacuous once the scale opens.
    with torch.no_grad():
        layer.branch_a.scale.fill_(0.5)
        layer.branch_b.scale.fill_(0.5)
    out_a, out_b = layer(a, b, corr)
    assert not torch.allclose(out_a.flatten(), _single_stream_path(layer.branch_a, a))
    assert not torch.allclose(out_b.flatten(), _single_stream_path(layer.branch_b, b))


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_gradients_reach_both_inputs_and_every_parameter(setup):
    make_b, corr, _ = SETUPS[setup]
    layer = _layer(setup, cross_scale_init=0.5)
    with torch.no_grad():  # zero-initialised weights (offsets) would hide paths at step 0
        for param in layer.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    a, b = _maps(2, 1), make_b(2)
    inputs = a.levels + b.levels if b.is_map else a.levels + [b.tokens]
    for tensor in inputs:
        tensor.requires_grad_(True)
    out_a, out_b = layer(a, b, corr)
    # Random weights: a plain sum of LayerNorm outputs is constant.
    loss = sum((t * torch.randn_like(t)).sum() for t in (out_a.flatten(), out_b.flatten()))
    loss.backward()
    for tensor in inputs:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    silent = [name for name, p in layer.named_parameters()
              if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, f"no gradient reaches {silent}"


def _sample(feats, index):
    """Sample `index` of a batch as a batch of one."""
    if feats.is_map:
        v = feats.num_views
        levels = [lvl[index * v:(index + 1) * v] for lvl in feats.levels]
        return replace(feats, levels=levels, present=feats.present[index:index + 1])
    return replace(feats, tokens=feats.tokens[index:index + 1],
                   padding_mask=feats.padding_mask[index:index + 1],
                   present=feats.present[index:index + 1])


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_missing_stream_b_matches_running_each_sample_alone(setup):
    make_b, corr, layer_kwargs = SETUPS[setup]
    encoder = DualStreamEncoder(num_layers=2, embed_dims=C, num_heads=HEADS, ffn_dims=32,
                                num_levels_a=2, num_points=2, cross_scale_init=0.5,
                                **layer_kwargs).double()
    a = _maps(2, 1, present=torch.tensor([True, True]))
    b = make_b(2, present=torch.tensor([True, False]))  # sample 1's B holds garbage
    out_a, out_b = encoder(a, b, corr)
    for index in (0, 1):
        alone_a, alone_b = encoder(_sample(a, index), _sample(b, index), corr)
        torch.testing.assert_close(_sample(out_a, index).flatten(), alone_a.flatten(),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(_sample(out_b, index).flatten(), alone_b.flatten(),
                                   atol=1e-5, rtol=0)
    # Sample 1 lacks B: its B passes through, its A follows the single-stream path.
    torch.testing.assert_close(_sample(out_b, 1).flatten(), _sample(b, 1).flatten(),
                               atol=0, rtol=0)
    a1 = _sample(a, 1)
    for layer in encoder.layers:
        a1 = a1.unflatten(_single_stream_path(layer.branch_a, a1))
    torch.testing.assert_close(_sample(out_a, 1).flatten(), a1.flatten(), atol=1e-5, rtol=0)


def test_structure_views_levels_and_padding_are_kept():
    layer = _layer("tokens_pooled")
    a, b = _maps(2, 1), _tokens(2)
    out_a, out_b = layer(a, b, AllPairsCorrespondence())
    assert [t.shape for t in out_a.levels] == [t.shape for t in a.levels]
    assert out_a.num_views == 1 and out_a.meta == dict(tag="kept")
    assert out_b.tokens.shape == b.tokens.shape and out_b.padding_mask is b.padding_mask
    assert torch.equal(out_b.tokens[b.padding_mask], b.tokens[b.padding_mask])
    assert not torch.allclose(out_b.tokens[~b.padding_mask], b.tokens[~b.padding_mask])
    layer = _layer("maps_ray")
    b = _maps(2, 2)
    out_a, out_b = layer(a, b, IdentityGridCorrespondence())
    assert [t.shape for t in out_b.levels] == [t.shape for t in b.levels]
    assert out_b.num_views == 2 and torch.isfinite(out_b.flatten()).all()
    assert torch.isfinite(out_a.flatten()).all()


def test_ray_spreading_splats_into_the_hit_cells_and_averages_views():
    spreading = RaySpreading(embed_dims=C, num_heads=HEADS).double()
    height, width = SHAPES[0]
    a, b = _maps(1, 1), _maps(1, 2)
    columns = b.levels[0].shape[-1]

    def centre(i, j):
        return torch.tensor([(j + 0.5) / width, (i + 0.5) / height], dtype=torch.float64)

    def layout(*hits):  # hits: (view, column, depth, cell)
        points = torch.full((1, 2, columns, 3, 2), float("nan"), dtype=torch.float64)
        valid = torch.zeros(1, 2, columns, 3, dtype=torch.bool)
        for view, column, depth, cell in hits:
            points[0, view, column, depth] = centre(*cell)
            valid[0, view, column, depth] = True
        return RayLayout(level=0, a_points=points, valid=valid)

    first, second, other = (0, 2, 1, (2, 3)), (1, 4, 0, (2, 3)), (0, 2, 2, (4, 5))
    both = spreading(layout(first, second, other), a, b)
    assert both.shape == (1, C, height, width) and torch.isfinite(both).all()
    hit = torch.zeros(height, width, dtype=torch.bool)
    hit[2, 3] = hit[4, 5] = True
    assert both[0][:, ~hit].abs().max() < 1e-9
    assert (both[0][:, hit].abs().sum(0) > 0).all()
    only_first = spreading(layout(first), a, b)[0, :, 2, 3]
    only_second = spreading(layout(second), a, b)[0, :, 2, 3]
    torch.testing.assert_close(both[0, :, 2, 3], (only_first + only_second) / 2)
    # A sample masked out (stream missing) spreads nothing.
    masked = spreading(layout(first, second, other), a, b, torch.tensor([False]))
    assert torch.equal(masked, torch.zeros_like(masked))


def test_ray_spreading_layer_needs_a_layout():
    layer = _layer("maps_ray")
    with pytest.raises(ValueError, match="ray layout"):
        layer(_maps(1, 1), _maps(1, 2), IdentityGridCorrespondence(with_rays=False))


def test_encoder_builds_from_config_and_asks_for_the_layout_once():
    encoder = MODELS.build(dict(type="DualStreamEncoder", num_layers=2, embed_dims=C,
                                num_heads=HEADS, ffn_dims=32, num_levels_a=2, num_levels_b=2,
                                spreading="auto", key_pos_dims_a=3, key_pos_dims_b=3,
                                layer_cfg=dict(num_points=3)))
    assert isinstance(encoder, DualStreamEncoder) and len(encoder.layers) == 2
    assert encoder.layers[1].branch_a.intra.num_points == 3

    calls = dict(layout=0, gather=0)

    class Counting(IdentityGridCorrespondence):
        def ray_layout(self, a, b):
            calls["layout"] += 1
            return super().ray_layout(a, b)

        def gather_b_for_a(self, a, b):
            calls["gather"] += 1
            return super().gather_b_for_a(a, b)

    a, b = _maps(1, 1, dtype=torch.float32), _maps(1, 2, dtype=torch.float32)
    out_a, out_b = encoder(a, b, Counting())
    assert calls == dict(layout=1, gather=2)
    assert out_a.levels[0].shape == a.levels[0].shape and out_b.num_views == 2
