"""tools/misc/visualize.py and the projection it relies on: boxes land where the camera sees
them, boxes behind a camera are not drawn, GT and predictions get their own colours."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from interlace.core.engine.cli import ToolError
from interlace.domains.driving.data.nuscenes_names import CAMERAS
from interlace.domains.driving.evaluation.submission import build_submission, write_submission
from interlace.domains.driving.evaluation.visualization import (GT_COLOUR, PRED_COLOUR,
                                                                project_box_edges)
from interlace.tools import visualize
from tests.fixtures.tools import run_tool

# A camera at the LiDAR origin looking along +x: camera z = x, camera x = -y, camera y = -z.
FRONT_LIDAR2CAM = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
BACK_LIDAR2CAM = np.array([[0, 1, 0, 0], [0, 0, -1, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], float)
CAM2IMG = np.array([[100.0, 0, 160], [0, 100.0, 90], [0, 0, 1]])
BOX = np.array([[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])   # 10 m ahead


def test_box_ahead_projects_around_its_centre_pixel():
    segments = project_box_edges(BOX, FRONT_LIDAR2CAM, CAM2IMG, (320, 180))
    assert segments.shape == (1, 14, 2, 2)
    xs, ys = segments[0, ..., 0], segments[0, ..., 1]
    # front face at 8 m: +-1 m wide -> +-12.5 px; back face at 12 m -> +-8.3 px
    assert xs.min() == pytest.approx(160 - 12.5) and xs.max() == pytest.approx(160 + 12.5)
    assert ys.min() == pytest.approx(90 - 0.75 / 8 * 100)


def test_boxes_behind_or_through_the_camera_are_not_drawn():
    behind = BOX.copy()
    behind[0, 0] = -10.0
    straddling = BOX.copy()
    straddling[0, 0] = 1.0   # from -1 m to 3 m: half of it behind the image plane
    assert project_box_edges(behind, FRONT_LIDAR2CAM, CAM2IMG, (320, 180)).shape[0] == 0
    assert project_box_edges(straddling, FRONT_LIDAR2CAM, CAM2IMG, (320, 180)).shape[0] == 0
    assert project_box_edges(behind, BACK_LIDAR2CAM, CAM2IMG, (320, 180)).shape[0] == 1


def write_tiny_sample(root) -> dict:
    """Points on the box, six grey images and an info file with one GT box."""
    rng = np.random.default_rng(0)
    (root / "samples" / "LIDAR_TOP").mkdir(parents=True)
    points = np.concatenate([rng.uniform([8, -1, -0.75], [12, 1, 0.75], (500, 3)),
                             np.zeros((500, 2))], 1).astype(np.float32)
    points.tofile(root / "samples" / "LIDAR_TOP" / "key.pcd.bin")
    images = {}
    for camera in CAMERAS:
        (root / "samples" / camera).mkdir(parents=True)
        Image.new("RGB", (320, 180), (128, 128, 128)).save(root / "samples" / camera / "im.jpg")
        images[camera] = dict(img_path="im.jpg", cam2img=CAM2IMG.tolist(),
                              lidar2cam=(BACK_LIDAR2CAM if camera == "CAM_BACK"
                                         else FRONT_LIDAR2CAM).tolist())
    info = dict(token="tok", ego2global=np.eye(4).tolist(), images=images, lidar_sweeps=[],
                lidar_points=dict(lidar_path="key.pcd.bin", lidar2ego=np.eye(4).tolist()),
                instances=[dict(bbox_3d=BOX[0, :7].tolist(), bbox_label_3d=0,
                                bbox_3d_isvalid=True, velocity=[0.0, 0.0])])
    with open(root / "infos.pkl", "wb") as stream:
        pickle.dump(dict(metainfo=dict(version="v1.0-mini"), data_list=[info]), stream)
    shifted = BOX.copy()
    shifted[0, 1] = 3.0
    write_submission(build_submission([dict(token="tok", bboxes_3d=shifted, scores_3d=[0.9],
                                            labels_3d=[0], lidar2ego=np.eye(4),
                                            ego2global=np.eye(4))]), root / "pred.json")
    return info


def count_colour(path, colour, tolerance: int = 40) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).max(axis=-1) < tolerance).sum())


def test_renders_gt_and_predictions_in_their_colours(tmp_path, capsys):
    write_tiny_sample(tmp_path)
    common = ["--info", str(tmp_path / "infos.pkl"), "--data-root", str(tmp_path), "--index", "0"]
    assert visualize.main(common + ["--out", str(tmp_path / "gt.png")]) == 0
    assert visualize.main(common + ["--pred", str(tmp_path / "pred.json"),
                                    "--out", str(tmp_path / "both.png")]) == 0
    assert "1 GT boxes, 1 predictions" in capsys.readouterr().out
    assert count_colour(tmp_path / "gt.png", GT_COLOUR) > 200
    assert count_colour(tmp_path / "gt.png", PRED_COLOUR) == 0
    assert count_colour(tmp_path / "both.png", PRED_COLOUR) > 200
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["both.png", "gt.png"]


def test_bad_index_and_unknown_token_name_the_info_file(tmp_path):
    write_tiny_sample(tmp_path)
    common = ["--info", str(tmp_path / "infos.pkl"), "--data-root", str(tmp_path),
              "--out", str(tmp_path / "x.png")]
    with pytest.raises(ToolError, match=r"infos.pkl: --index 3 out of range \(0..0\)"):
        visualize.main(common + ["--index", "3"])
    with pytest.raises(ToolError, match="infos.pkl: no sample with token nope"):
        visualize.main(common + ["--token", "nope"])
    assert not (tmp_path / "x.png").exists()


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as exited:
        visualize.parse_args(["--help"])
    assert exited.value.code == 0
    assert "python tools/misc/visualize.py --info" in capsys.readouterr().out


@pytest.mark.slow
def test_help_runs_as_a_command():
    result = run_tool("tools/misc/visualize.py", "--help", timeout=120)
    assert result.returncode == 0 and "--score-thr" in result.stdout
