"""InteractionDetectionHead: forward, losses, gradients, predictions; LiDAR-only, with the
LiDAR-only heatmap averaged in, and with cameras through a ProjectionCorrespondence."""
import pytest
import torch

from interlace.core.engine.registry import MODELS
from interlace.core.interaction import StreamFeatures
from interlace.domains.driving.models.heads import InteractionDetectionHead

# 32 x 32 map of 1 m cells over +-16 m.
CODER = dict(pc_range=(-16.0, -16.0, -5.0, 16.0, 16.0, 3.0), voxel_size=(0.125, 0.125),
             out_size_factor=8, post_center_range=(-20.0, -20.0, -10.0, 20.0, 20.0, 10.0))
SMALL_DECODER = dict(num_heads=4, ffn_dims=64, grid_size=3, dynamic_dims=8)


def tiny_head(**overrides) -> InteractionDetectionHead:
    cfg = dict(type="InteractionDetectionHead", in_channels=64, embed_dims=64, num_queries=20,
               layer_streams=("a", "a"), bbox_coder=CODER, heatmap_channels=32,
               decoder=SMALL_DECODER)
    cfg.update(overrides)
    return MODELS.build(cfg)


def gt_boxes():
    boxes = [torch.tensor([[3.0, 4.0, 0.0, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0],
                           [-5.0, -6.0, -0.5, 0.8, 0.7, 1.7, 1.0, 0.0, 0.5]]),
             torch.tensor([[8.0, -2.0, 0.2, 4.5, 1.9, 1.6, -2.0, float("nan"), float("nan")]])]
    labels = [torch.tensor([0, 8]), torch.tensor([1])]
    return boxes, labels


def test_lidar_only_loss_is_finite_and_trains_heatmap_conv_and_decoder():
    head = tiny_head()
    bev = torch.randn(2, 64, 32, 32, requires_grad=True)
    boxes, labels = gt_boxes()
    losses = head.loss(bev, gt_bboxes_3d=boxes, gt_labels_3d=labels)
    expected = {"layer0_loss_cls", "layer0_loss_bbox", "layer1_loss_cls", "layer1_loss_bbox",
                "loss_heatmap", "matched_ious"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(float(losses[k].detach()) > 0 for k in expected - {"matched_ious"})
    sum(v for k, v in losses.items() if "loss" in k).backward()

    def reached(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert reached(head.heatmap_conv)
    for layer, layer_heads in zip(head.decoder.layers, head.decoder.heads):
        assert reached(layer)
        for name in ("center", "height", "size", "rot", "vel", "heatmap"):
            assert reached(layer_heads[name]), name
    assert bev.grad is not None and bev.grad.abs().sum() > 0


def test_predict_returns_sorted_boxes_inside_the_range():
    head = tiny_head(max_detections=15).eval()
    results = head.predict(StreamFeatures(levels=[torch.randn(2, 64, 32, 32)]))
    assert len(results) == 2
    for det in results:
        n = det["bboxes_3d"].shape[0]
        assert det["bboxes_3d"].shape == (n, 9) and 0 < n <= 15
        assert det["scores_3d"].shape == (n,) and det["labels_3d"].shape == (n,)
        assert det["labels_3d"].dtype == torch.long
        assert ((det["labels_3d"] >= 0) & (det["labels_3d"] < 10)).all()
        assert (det["scores_3d"] > 0).all() and (det["scores_3d"] <= 1).all()
        assert torch.all(det["scores_3d"][:-1] >= det["scores_3d"][1:])
        # queries start on the map; untrained centre heads start at "no move"
        assert (det["bboxes_3d"][:, :2].abs() <= 16.0).all()
        assert (det["bboxes_3d"][:, 3:6] > 0).all()


def test_lidar_only_heatmap_is_averaged_in_and_supervised():
    head = tiny_head(lidar_only_in_channels=16)
    bev, lidar_bev = torch.randn(1, 64, 32, 32), torch.randn(1, 16, 32, 32)
    boxes, labels = gt_boxes()
    out = head(bev, lidar_only_bev=lidar_bev)
    both = (out.dense_heatmaps["bev"].sigmoid() + out.dense_heatmaps["lidar_only"].sigmoid()) / 2
    assert torch.allclose(out.decoder.heatmap.sigmoid(), both, atol=1e-5)
    losses = head.loss_by_feat(out, boxes[:1], labels[:1])
    assert "loss_heatmap_lidar_only" in losses
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert head.lidar_only_heatmap_conv[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="lidar_only_in_channels"):
        tiny_head()(bev, lidar_only_bev=lidar_bev)


def test_camera_layers_without_cameras_keep_the_previous_predictions():
    head = tiny_head(layer_streams=("a", "b")).eval()
    with torch.no_grad():
        out = head(torch.randn(1, 64, 32, 32))            # B absent: --drop camera
    first, second = out.decoder.layers
    assert not second["seen"].any()
    assert torch.equal(first["center"], second["center"])
    assert torch.equal(first["size"], second["size"])


def test_map_size_must_match_the_coder_grid():
    with pytest.raises(ValueError, match="box coder"):
        tiny_head()(torch.randn(1, 64, 30, 32))


def test_cameras_enter_through_the_projection_correspondence():
    from interlace.benchmarks.interaction_scene import make_scene

    scene = make_scene(num_pillars=200, bev_size=36, channels=32, image_scale=0.125)
    coder = dict(pc_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), voxel_size=(0.375, 0.375),
                 out_size_factor=8)
    head = tiny_head(in_channels=32, embed_dims=32, layer_streams=("a", "b"), bbox_coder=coder)
    image = scene.b.levels[0].requires_grad_(True)
    boxes = [torch.tensor([[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])]
    out = head(scene.a, scene.b, scene.correspondence)
    assert out.decoder.layers[1]["seen"].any(), "no query was seen by a camera"
    losses = head.loss_by_feat(out, boxes, [torch.tensor([0])])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_a_sample_without_objects_is_all_background():
    head = tiny_head()
    losses = head.loss(torch.randn(1, 64, 32, 32), gt_bboxes_3d=[torch.zeros(0, 9)],
                       gt_labels_3d=[torch.zeros(0, dtype=torch.long)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["layer1_loss_bbox"].detach()) == 0.0
    assert float(losses["layer1_loss_cls"].detach()) > 0     # every query pushed to background
