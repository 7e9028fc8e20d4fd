"""A synthetic batch at DeepInteraction++ scale for the interaction benchmark.

Six nuScenes-like cameras (448 x 800 input, features at strides 4 and 8, 128 channels),
a BEV map over [-54, 54] m (180 x 180 and 90 x 90 levels at 0.6 m cells, 128 channels)
and LiDAR pillars: `num_pillars` non-empty cells with 1 to 20 points each. With
``bev_size=360`` (0.3 m cells) the same range holds 4x the pillars.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from interlace.core.interaction import ProjectionCorrespondence, StreamFeatures

BEV_RANGE = (-54.0, -54.0, 54.0, 54.0)
IMAGE_SHAPE = (448, 800)
CAMERA_YAWS_DEG = (0.0, -55.0, 55.0, 180.0, 110.0, -110.0)  # front, front-right, ...
FOCAL = 633.0  # 1266 px at 1600 wide, resized by 0.5


@dataclass
class Scene:
    a: StreamFeatures
    b: StreamFeatures
    correspondence: ProjectionCorrespondence
    pillar_cells: torch.Tensor  # (num_pillars,) flat index into A's level 0


def camera_rig() -> torch.Tensor:
    """lidar2img (1, 6, 4, 4) for cameras 0.3 m below the LiDAR looking outwards."""
    intrinsic = torch.tensor([[FOCAL, 0, IMAGE_SHAPE[1] / 2, 0], [0, FOCAL, IMAGE_SHAPE[0] / 2, 0],
                              [0, 0, 1, 0], [0, 0, 0, 1]])
    mats = []
    for yaw_deg in CAMERA_YAWS_DEG:
        yaw = math.radians(yaw_deg)
        forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
        right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
        down = torch.tensor([0.0, 0.0, -1.0])
        rotation = torch.stack([right, down, forward])  # rows: camera x, y, z in LiDAR frame
        centre = torch.tensor([0.0, 0.0, -0.3])
        extrinsic = torch.eye(4)
        extrinsic[:3, :3] = rotation
        extrinsic[:3, 3] = -rotation @ centre
        mats.append(intrinsic @ extrinsic)
    return torch.stack(mats)[None]


def pillar_points(num_pillars: int, bev_size: int, generator: torch.Generator) -> tuple:
    """`num_pillars` distinct cells, each with 1..20 points uniformly inside it."""
    cells = torch.randperm(bev_size * bev_size, generator=generator)[:num_pillars]
    counts = torch.randint(1, 21, (num_pillars,), generator=generator)
    cell_of_point = torch.repeat_interleave(cells, counts)
    cell = (BEV_RANGE[2] - BEV_RANGE[0]) / bev_size
    row, col = cell_of_point // bev_size, cell_of_point % bev_size
    jitter = torch.rand(cell_of_point.numel(), 2, generator=generator)
    x = BEV_RANGE[0] + (col + jitter[:, 0]) * cell
    y = BEV_RANGE[1] + (row + jitter[:, 1]) * cell
    z = -1.8 + 2.8 * torch.rand(cell_of_point.numel(), generator=generator)
    return torch.stack([x, y, z], dim=1), cells


def make_scene(num_pillars: int = 20_000, bev_size: int = 180, channels: int = 128,
               image_scale: float = 1.0, seed: int = 0) -> Scene:
    """Random features on the real geometry; `image_scale` < 1 shrinks the images (smoke)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = (int(IMAGE_SHAPE[0] * image_scale), int(IMAGE_SHAPE[1] * image_scale))
    a = StreamFeatures(levels=[torch.randn(1, channels, bev_size, bev_size, generator=generator),
                               torch.randn(1, channels, bev_size // 2, bev_size // 2,
                                           generator=generator)])
    b = StreamFeatures(levels=[torch.randn(6, channels, height // 4, width // 4, generator=generator),
                               torch.randn(6, channels, height // 8, width // 8,
                                           generator=generator)], num_views=6)
    points, cells = pillar_points(num_pillars, bev_size, generator)
    lidar2img = camera_rig()
    if image_scale != 1.0:
        scale = torch.diag(torch.tensor([image_scale, image_scale, 1.0, 1.0]))
        lidar2img = scale @ lidar2img
    correspondence = ProjectionCorrespondence(lidar2img, (height, width), BEV_RANGE,
                                              pillar_points=[points], max_points_per_pillar=20)
    return Scene(a=a, b=b, correspondence=correspondence, pillar_cells=cells)
