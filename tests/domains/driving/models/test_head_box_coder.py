"""TransFusionBoxCoder: BEV-grid codes of 3D boxes and back."""
import math

import pytest
import torch

from interlace.domains.driving.models.heads import TransFusionBoxCoder

NUSCENES = dict(pc_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), voxel_size=(0.075, 0.075, 0.2),
                out_size_factor=8)


def test_encode_gives_grid_centre_geometric_z_log_sizes_sin_cos_velocity():
    coder = TransFusionBoxCoder(**NUSCENES)
    box = torch.tensor([[0.6, -1.2, 0.5, 4.0, 2.0, 1.5, math.pi / 2, 1.0, -2.0]])
    code = coder.encode(box)[0]
    # cells of 0.075 * 8 = 0.6 m: x = 0.6 m is (0.6 + 54) / 0.6 = 91 cells from the edge
    expected = [91.0, 88.0, 0.5, math.log(4.0), math.log(2.0), math.log(1.5), 1.0, 0.0, 1.0, -2.0]
    assert code.tolist() == pytest.approx(expected, abs=1e-5)
    assert coder.grid_shape == (180, 180)
    assert coder.cell_size == pytest.approx((0.6, 0.6))


def test_encode_then_decode_is_identity():
    coder = TransFusionBoxCoder(**NUSCENES)
    g = torch.Generator().manual_seed(1)
    n = 64
    boxes = torch.cat([torch.rand(n, 2, generator=g) * 100 - 50,
                       torch.rand(n, 1, generator=g) * 4 - 2,
                       torch.rand(n, 3, generator=g) * 10 + 0.2,
                       (torch.rand(n, 1, generator=g) * 2 - 1) * (math.pi - 1e-3),
                       torch.randn(n, 2, generator=g) * 5], dim=1).double()
    decoded = coder.decode_boxes(coder.encode(boxes))
    assert torch.allclose(decoded, boxes, atol=1e-5, rtol=0)


def test_without_velocity_codes_have_eight_values():
    coder = TransFusionBoxCoder(**NUSCENES, code_size=8)
    box = torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3]], dtype=torch.float64)
    code = coder.encode(box)
    assert code.shape == (1, 8)
    assert torch.allclose(coder.decode_boxes(code), box, atol=1e-6)


def test_decode_drops_low_scores_and_centres_outside_post_centre_range():
    coder = TransFusionBoxCoder(**NUSCENES, score_threshold=0.1,
                                post_center_range=(-61.2, -61.2, -10.0, 61.2, 61.2, 10.0))
    boxes = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],     # kept
                          [10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],    # score too low
                          [70.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0],    # x > 61.2
                          [0.0, 0.0, 12.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])   # z > 10
    codes = coder.encode(boxes)[None]
    scores = torch.tensor([[[0.1, 0.9], [0.05, 0.02], [0.8, 0.1], [0.7, 0.0]]])
    (det,) = coder.decode(scores, codes)
    assert det["bboxes"].shape == (1, 9)
    assert det["labels"].tolist() == [1] and det["scores"].tolist() == pytest.approx([0.9])
    assert torch.allclose(det["bboxes"][0], boxes[0], atol=1e-5)
    (unfiltered,) = coder.decode(scores, codes, filter=False)
    assert unfiltered["bboxes"].shape == (4, 9)


def test_rejects_wrong_shapes():
    coder = TransFusionBoxCoder(**NUSCENES)
    with pytest.raises(ValueError, match="boxes"):
        coder.encode(torch.zeros(3, 7))
    with pytest.raises(ValueError, match="code_size"):
        TransFusionBoxCoder(**NUSCENES, code_size=9)
