"""The head can fit one sample: the loss falls and the top box lands on the GT."""
import pytest
import torch

from interlace.domains.driving.models.heads import InteractionDetectionHead

# 16 x 16 map of 2 m cells over +-16 m.
CODER = dict(pc_range=(-16.0, -16.0, -5.0, 16.0, 16.0, 3.0), voxel_size=(0.25, 0.25),
             out_size_factor=8, post_center_range=(-20.0, -20.0, -10.0, 20.0, 20.0, 10.0))


@pytest.mark.slow  # trains to a target: kept out of the default run
def test_overfits_one_sample_and_the_top_box_lands_on_the_gt():
    head = InteractionDetectionHead(
        in_channels=32, embed_dims=32, num_queries=10, layer_streams=("a", "a"),
        bbox_coder=CODER, heatmap_channels=32,
        decoder=dict(num_heads=4, ffn_dims=64, grid_size=3, dynamic_dims=8))
    gt = torch.tensor([[3.3, -4.6, 0.2, 4.2, 1.9, 1.6, 0.4, 1.0, 0.0]])
    label = torch.tensor([0])
    g = torch.Generator().manual_seed(0)
    bev = torch.randn(1, 32, 16, 16, generator=g) * 0.5
    # The object leaves a feature signature on the 3 x 3 cells around its centre cell.
    col, row = int((3.3 + 16) / 2), int((-4.6 + 16) / 2)
    bev[0, :, row - 1:row + 2, col - 1:col + 2] += torch.randn(32, 1, 1, generator=g) * 2
    optimizer = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=0.0)
    totals = []
    for _ in range(50):
        losses = head.loss(bev, gt_bboxes_3d=[gt], gt_labels_3d=[label])
        total = sum(v for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < 0.5 * totals[0], totals
    head.eval()
    top = head.predict(bev)[0]
    assert int(top["labels_3d"][0]) == 0
    assert float(torch.dist(top["bboxes_3d"][0, :2], gt[0, :2])) < 1.0
    assert float(top["scores_3d"][0]) > 5 * float(top["scores_3d"][1])
