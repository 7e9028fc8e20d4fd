"""Gaussian heatmap targets: CenterNet radius, peak drawing, class channels and axes."""
import math

import pytest
import torch

from interlace.domains.driving.models.heads import (class_heatmap_targets, draw_gaussian,
                                                    gaussian_radius)


def test_gaussian_radius_of_a_square_box_is_the_third_root():
    # h = w = 10, overlap 0.1: r1 = (20 + sqrt(400 - 4 * 900 / 11)) / 2 = 14.26,
    # r2 = (40 + sqrt(1600 - 16 * 90)) / 2 = 26.32, r3 = (-4 + sqrt(16 + 144)) / 2 = 4.32
    assert gaussian_radius(10.0, 10.0, 0.1) == pytest.approx((-4 + math.sqrt(160)) / 2)
    assert gaussian_radius(10.0, 10.0, 0.1) < gaussian_radius(20.0, 20.0, 0.1)


def test_draw_gaussian_values_and_border_clipping():
    heatmap = torch.zeros(7, 7)
    draw_gaussian(heatmap, (1, 3), radius=2)      # (x, y): column 1, row 3
    sigma = 5 / 6                                  # diameter / 6
    one = math.exp(-1 / (2 * sigma ** 2))
    assert heatmap[3, 1] == 1.0
    assert float(heatmap[3, 2]) == pytest.approx(one, rel=1e-5)
    assert float(heatmap[3, 0]) == pytest.approx(one, rel=1e-5)      # clipped at the border
    assert float(heatmap[4, 2]) == pytest.approx(one ** 2, rel=1e-5)
    assert float(heatmap[5, 3]) == pytest.approx(math.exp(-8 / (2 * sigma ** 2)), rel=1e-4)
    assert heatmap[3, 4] == 0 and heatmap[0, 1] == 0               # beyond the radius
    # a second, weaker neighbour keeps the maximum, not the sum
    before = heatmap.clone()
    draw_gaussian(heatmap, (2, 3), radius=2)
    assert heatmap[3, 2] == 1.0 and heatmap[3, 1] == 1.0
    assert torch.all(heatmap >= before)


def test_class_targets_put_the_peak_on_row_y_column_x_of_the_label_channel():
    boxes = torch.tensor([[3.5, -2.5, 0.0, 0.8, 0.6, 1.7, 0.0],      # small: min radius 2
                          [100.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])    # outside the map
    labels = torch.tensor([2, 0])
    target = class_heatmap_targets(boxes, labels, num_classes=3, grid_shape=(16, 20),
                                   pc_range_xy=(-10.0, -8.0), cell_size=(1.0, 1.0))
    assert target.shape == (3, 16, 20)
    # x = 3.5 m -> column 13; y = -2.5 m -> row 5
    assert target[2, 5, 13] == 1.0 and int(target.eq(1).sum()) == 1
    assert target[0].sum() == 0 and target[1].sum() == 0
    assert target[2, 5, 15] > 0 and target[2, 5, 16] == 0          # radius 2 exactly
    assert target[2, 7, 13] > 0 and target[2, 8, 13] == 0
