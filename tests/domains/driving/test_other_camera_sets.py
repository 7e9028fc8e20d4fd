"""nuScenes-format databases that are not nuScenes: another camera rig (3 cameras) and a
LiDAR-only database go through create_data, the info files and the dataset."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from mmengine.registry import init_default_scope

from interlace.core.engine.registry import DATASETS, register_all_modules
from interlace.domains.driving.data.info_creation import (InfoCreationError,
                                                          create_nuscenes_infos)
from interlace.domains.driving.data.info_files import InfoFileError
from interlace.domains.driving.data.nuscenes_names import CAMERAS
from tests.domains.driving.camera_sets import remove_cameras
from tests.fixtures.tools import run_tool

THREE = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_BACK")


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """One generated v1.0-mini database (2 scenes x 2 samples), copied twice: one keeps
    3 cameras, one keeps none."""
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    base = tmp_path_factory.mktemp("nuscenes_base")
    make_synthetic_nuscenes(base, scenes=2, samples_per_scene=2, version="v1.0-mini",
                            verbose=False)
    three, none = base.parent / "three_cameras", base.parent / "no_cameras"
    shutil.copytree(base, three)
    shutil.copytree(base, none)
    assert remove_cameras(three, "v1.0-mini", [c for c in CAMERAS if c not in THREE]) > 0
    assert remove_cameras(none, "v1.0-mini", CAMERAS) > 0
    return dict(three=three, none=none)


def _infos(path):
    with open(path, "rb") as stream:
        return pickle.load(stream)


def test_six_camera_default_names_the_missing_camera_and_what_the_sample_has(databases, tmp_path):
    expected = r"no CAM_FRONT_RIGHT sample_data; its cameras are \['CAM_BACK', 'CAM_FRONT', "
    with pytest.raises(InfoCreationError, match=expected + r"'CAM_FRONT_LEFT'\]"):
        create_nuscenes_infos(databases["three"], "v1.0-mini", tmp_path, progress=False)


def test_three_camera_infos_hold_those_cameras_in_the_given_order(databases, tmp_path):
    written = create_nuscenes_infos(databases["three"], "v1.0-mini", tmp_path, max_sweeps=2,
                                    progress=False, cameras=THREE)
    assert {split: entry["samples"] for split, entry in written.items()} == {"train": 2, "val": 2}
    for entry in written.values():
        payload = _infos(entry["path"])
        assert payload["metainfo"]["cameras"] == list(THREE)
        for sample in payload["data_list"]:
            assert list(sample["images"]) == list(THREE)
            for camera, image in sample["images"].items():
                assert (databases["three"] / "samples" / camera / image["img_path"]).is_file()


def test_lidar_only_infos_have_empty_images(databases, tmp_path):
    written = create_nuscenes_infos(databases["none"], "v1.0-mini", tmp_path, max_sweeps=2,
                                    progress=False, cameras=())
    payload = _infos(written["train"]["path"])
    assert payload["metainfo"]["cameras"] == []
    assert [sample["images"] for sample in payload["data_list"]] == [{}, {}]
    assert all(len(sample["instances"]) > 0 for sample in payload["data_list"])


def test_bad_camera_lists_are_refused():
    with pytest.raises(InfoCreationError, match="more than once"):
        create_nuscenes_infos("unused", "v1.0-mini", cameras=("CAM_FRONT", "CAM_FRONT"))
    with pytest.raises(InfoCreationError, match="LiDAR channel"):
        create_nuscenes_infos("unused", "v1.0-mini", cameras=("LIDAR_TOP",))


def test_create_data_tool_takes_a_camera_list_and_none(databases, tmp_path):
    root = databases["three"]
    result = run_tool("tools/create_data.py", "nuscenes", "--root", root, "--version",
                      "v1.0-mini", "--out", tmp_path / "three", "--no-progress",
                      "--skip-gt-database", "--cameras", *THREE)
    assert result.returncode == 0, result.stderr
    assert "train: 2 samples" in result.stdout
    assert list(_infos(tmp_path / "three" / "nuscenes_infos_train.pkl")["data_list"][0]
                ["images"]) == list(THREE)
    result = run_tool("tools/create_data.py", "nuscenes", "--root", databases["none"],
                      "--version", "v1.0-mini", "--out", tmp_path / "none", "--no-progress",
                      "--skip-gt-database", "--cameras", "none")
    assert result.returncode == 0, result.stderr
    assert "LiDAR-only" in result.stdout
    assert _infos(tmp_path / "none" / "nuscenes_infos_val.pkl")["data_list"][0]["images"] == {}


def _dataset(root, ann_file, **kwargs):
    register_all_modules()
    init_default_scope("interlace")
    pipeline = [dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
                dict(type="LoadMultiViewImages"),
                dict(type="ImageResizeCrop", final_dim=(32, 64), resize_lim=(0.16, 0.16),
                     bot_pct_lim=(0.0, 0.0), is_train=False),
                dict(type="ImageNormalize"),
                dict(type="Pack3DDetInputs", keys=("points", "img"))]
    return DATASETS.build(dict(type="NuScenesDataset", data_root=str(root), ann_file=ann_file,
                               pipeline=pipeline, test_mode=True, **kwargs))


def test_dataset_loads_three_views_and_a_chosen_subset(databases, tmp_path):
    root = databases["three"]
    create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=0, progress=False,
                          cameras=THREE, extra_tag="three")
    sample = _dataset(root, "three_infos_val.pkl")[0]
    assert tuple(sample["inputs"]["img"].shape) == (3, 3, 32, 64)
    assert sample["data_samples"].metainfo["cam_names"] == list(THREE)
    assert np.asarray(sample["data_samples"].metainfo["lidar2img"]).shape == (3, 4, 4)
    two = _dataset(root, "three_infos_val.pkl", cameras=["CAM_BACK", "CAM_FRONT"])[0]
    assert two["data_samples"].metainfo["cam_names"] == ["CAM_BACK", "CAM_FRONT"]
    assert tuple(two["inputs"]["img"].shape) == (2, 3, 32, 64)
    with pytest.raises(InfoFileError, match=r"has no \['CAM_BACK_RIGHT'\] image"):
        _dataset(root, "three_infos_val.pkl", cameras=["CAM_BACK_RIGHT"])


def test_a_camera_nuscenes_does_not_have_is_read_from_its_samples_folder(databases, tmp_path):
    root = databases["three"]
    create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=0, progress=False,
                          cameras=THREE, extra_tag="renamed")
    path = root / "renamed_infos_val.pkl"
    payload = _infos(path)
    for sample in payload["data_list"]:  # as a rig whose front camera has another name
        sample["images"] = {("CAM_WIDE" if k == "CAM_FRONT" else k): v
                            for k, v in sample["images"].items()}
    shutil.copytree(root / "samples" / "CAM_FRONT", root / "samples" / "CAM_WIDE",
                    dirs_exist_ok=True)
    with open(path, "wb") as stream:
        pickle.dump(payload, stream)
    info = _dataset(root, "renamed_infos_val.pkl").get_data_info(0)
    assert info["images"]["CAM_WIDE"]["img_path"].startswith(str(root / "samples" / "CAM_WIDE"))


def test_lidar_only_samples_pack_points_and_no_images(databases):
    root = databases["none"]
    create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=0, progress=False, cameras=())
    sample = _dataset(root, "nuscenes_infos_val.pkl")[0]
    assert set(sample["inputs"]) == {"points"}
    assert sample["data_samples"].metainfo["cam_names"] == []
