"""GeoContextPrototypes: region indexing, region-local reads and updates, D -> 2D."""
import torch

from interlace.domains.remote_sensing.models import GeoContextPrototypes


def _bank(**kwargs):
    defaults = dict(embed_dims=8, lat_bins=2, lon_bins=4, num_prototypes=3, momentum=0.5)
    defaults.update(kwargs)
    return GeoContextPrototypes(**defaults)


def test_region_index_of_known_places():
    geo = _bank()
    latlon = torch.tensor([[-89.0, -179.0],   # south-west cell: row 0, col 0
                           [45.4, 9.3],       # north, 0..90 E: row 1, col 2
                           [90.0, 180.0],     # north pole, 180 E wraps to 180 W: row 1, col 0
                           [-10.0, 100.0]])   # south, 90..180 E: row 0, col 3
    assert geo.region_index(latlon).tolist() == [0, 6, 4, 3]
    assert geo.num_regions == 8 and geo.bank.shape == (8, 3, 8)


def test_update_moves_only_the_samples_region():
    geo = _bank()
    before = geo.bank.clone()
    latlon = torch.tensor([[45.4, 9.3]])  # region 6
    regions = geo.update(torch.randn(1, 8, 4, 4), latlon)
    assert regions.tolist() == [6]
    changed = (geo.bank - before).abs().flatten(1).sum(1) > 0
    assert changed.tolist() == [False] * 6 + [True, False]
    assert torch.allclose(geo.bank.norm(dim=-1), torch.ones(8, 3))


def test_update_follows_the_assigned_features():
    geo = _bank(momentum=0.0, num_prototypes=1)
    direction = torch.nn.functional.normalize(torch.randn(8), dim=0)
    features = direction.view(1, 8, 1, 1).expand(1, 8, 2, 2)
    geo.update(features, torch.tensor([[45.4, 9.3]]))
    # One prototype takes every feature; momentum 0 puts it on their (normalised) mean.
    assert torch.allclose(geo.bank[6, 0], direction, atol=1e-5)


def test_output_reads_only_the_samples_region():
    geo = _bank().eval()
    features, latlon = torch.randn(1, 8, 3, 3), torch.tensor([[45.4, 9.3]])
    out = geo(features, latlon)
    assert out.shape == (1, 16, 3, 3)
    assert torch.equal(out[:, :8], features)
    with torch.no_grad():
        geo.bank[[0, 1, 2, 3, 4, 5, 7]] = torch.randn(7, 3, 8)
    assert torch.equal(geo(features, latlon), out)
    with torch.no_grad():
        geo.bank[6] = torch.randn(3, 8)
    assert not torch.allclose(geo(features, latlon), out)


def test_no_gradient_reaches_the_bank():
    geo = _bank()
    latlon = torch.tensor([[0.0, 0.0], [50.0, 50.0]])
    geo(torch.randn(2, 8, 2, 2, requires_grad=True), latlon).sum().backward()
    assert not geo.bank.requires_grad and geo.query.weight.grad is not None
