"""Driving batch-inference IO: the reader runs the test pipeline on a sample chosen by
token, the writer puts boxes in the global frame of the submission format, and the merge
builds a submission only when every sample of the info file has its file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import BaseDataElement, InstanceData

from interlace.core.engine.registry import INFERENCE_IO, register_all_modules
from interlace.domains.driving.data.info_files import load_info_file
from interlace.domains.driving.evaluation import inference_io
from interlace.domains.driving.evaluation.inference_io import (NuScenesSampleReader,
                                                               NuScenesSubmissionWriter,
                                                               merge_sample_predictions,
                                                               sample_tokens,
                                                               write_sample_tokens)
from interlace.domains.driving.evaluation.submission import SubmissionError, load_submission
from tests.fixtures.tools import ROOT

FUSION_INFER = ROOT / "configs" / "driving" / "deepinteraction_r18_synthetic_tiny.py"
LIDAR_INFER = ROOT / "configs" / "driving" / "transfusion_l_synthetic_tiny.py"


def make_tiny_database(root) -> dict:
    """A generated v1.0-mini database (2 scenes x 2 samples: one train and one val
    scene) with 3-sweep info files; returns the val info file, tokens and entries."""
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    make_synthetic_nuscenes(root, scenes=2, samples_per_scene=2, version="v1.0-mini",
                            verbose=False)
    written = create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=3, progress=False)
    info_file = written["val"]["path"]
    _, infos = load_info_file(info_file)
    return dict(root=root, info_file=info_file, tokens=[i["token"] for i in infos],
                infos=infos)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    register_all_modules()
    init_default_scope("interlace")
    return make_tiny_database(tmp_path_factory.mktemp("nuscenes_io"))


def reader_from(config, db) -> NuScenesSampleReader:
    reader_cfg = dict(Config.fromfile(str(config)).infer_cfg.reader)
    reader_cfg["data_root"] = str(db["root"])
    return INFERENCE_IO.build(reader_cfg)


def test_infer_configs_name_registered_io_and_the_test_pipeline():
    for config, use_camera in ((FUSION_INFER, True), (LIDAR_INFER, False)):
        cfg = Config.fromfile(str(config))
        assert cfg.infer_cfg.reader.pipeline == cfg.test_dataloader.dataset.pipeline
        assert cfg.infer_cfg.reader.info_file == cfg.test_dataloader.dataset.ann_file
        assert INFERENCE_IO.get(cfg.infer_cfg.reader.type) is NuScenesSampleReader
        assert INFERENCE_IO.get(cfg.infer_cfg.writer.type) is NuScenesSubmissionWriter
        assert cfg.infer_cfg.writer.modality.use_camera is use_camera


def test_reader_runs_the_test_pipeline_on_the_sample_named_by_its_token(db):
    reader = reader_from(FUSION_INFER, db)
    token = db["tokens"][1]
    batch = reader.read(token)
    assert len(batch["inputs"]["points"]) == 1 and len(batch["data_samples"]) == 1
    points = batch["inputs"]["points"][0]
    assert points.ndim == 2 and points.shape[1] == 5 and len(points) > 100
    assert tuple(batch["inputs"]["img"][0].shape) == (6, 3, 96, 160)  # resized views
    meta = batch["data_samples"][0].metainfo
    assert meta["token"] == token
    np.testing.assert_allclose(meta["ego2global"], db["infos"][1]["ego2global"], atol=1e-3)


def test_lidar_only_reader_loads_no_images(db):
    batch = reader_from(LIDAR_INFER, db).read(db["tokens"][0])
    assert "img" not in batch["inputs"]
    assert batch["data_samples"][0].metainfo["token"] == db["tokens"][0]


def test_reader_refuses_unknown_tokens_and_paths(db):
    reader = reader_from(LIDAR_INFER, db)
    with pytest.raises(ValueError, match="not in"):
        reader.read("0" * 32)
    with pytest.raises(ValueError, match="not a sample token"):
        reader.read("../escape")


def predicted_sample(token: str, boxes, scores, labels, lidar2ego, ego2global) -> BaseDataElement:
    sample = BaseDataElement(metainfo=dict(token=token, lidar2ego=np.float32(lidar2ego),
                                           ego2global=np.float32(ego2global)))
    sample.pred_instances_3d = InstanceData(bboxes_3d=torch.tensor(boxes, dtype=torch.float32),
                                            scores_3d=torch.tensor(scores),
                                            labels_3d=torch.tensor(labels))
    return sample


def test_writer_writes_boxes_in_the_global_frame_sorted_by_score(tmp_path):
    lidar2ego = np.eye(4)
    lidar2ego[:3, 3] = [1.0, 0.0, 1.8]
    ego2global = np.array([[0, -1, 0, 100], [1, 0, 0, 200], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    boxes = [[10, 0, 0, 4, 2, 1.5, 0, 1, 0], [0, 5, 0, 0.6, 0.6, 1.7, 0, 0, 0]]
    sample = predicted_sample("tok", boxes, [0.2, 0.9], [0, 8], lidar2ego, ego2global)
    writer = NuScenesSubmissionWriter(modality=dict(use_lidar=True, use_camera=False))
    assert writer.output_name("tok") == "tok.json"
    writer.write([sample], "tok", str(tmp_path / "tok.json"))
    payload = json.loads((tmp_path / "tok.json").read_text())
    assert payload["sample_token"] == "tok"
    assert payload["meta"]["use_camera"] is False and payload["meta"]["use_lidar"] is True
    first, second = payload["results"]
    assert first["detection_name"] == "pedestrian"
    assert first["detection_score"] == pytest.approx(0.9)
    # car centre (10, 0, 0) LiDAR -> (11, 0, 1.8) ego -> rotated 90 deg + (100, 200) global
    assert second["translation"] == pytest.approx([100.0, 211.0, 1.8], abs=1e-4)
    assert second["velocity"] == pytest.approx([0.0, 1.0], abs=1e-6)
    assert second["attribute_name"] == "vehicle.moving"


def test_writer_refuses_predictions_of_another_sample(tmp_path):
    sample = predicted_sample("other", [[1, 0, 0, 1, 1, 1, 0, 0, 0]], [0.5], [0],
                              np.eye(4), np.eye(4))
    with pytest.raises(ValueError, match="returned sample other"):
        NuScenesSubmissionWriter().write([sample], "tok", str(tmp_path / "tok.json"))
    assert not (tmp_path / "tok.json").exists()


def write_sample_files(db, out_dir, skip: int = 0) -> None:
    """One writer file per val sample (the first `skip` left out), each with one box."""
    writer = NuScenesSubmissionWriter()
    out_dir.mkdir(parents=True, exist_ok=True)
    for info in db["infos"][skip:]:
        sample = predicted_sample(info["token"], [[5, 0, 0, 4, 2, 1.5, 0, 0, 0]], [0.7], [0],
                                  info["lidar_points"]["lidar2ego"], info["ego2global"])
        writer.write([sample], info["token"], str(out_dir / writer.output_name(info["token"])))


def test_merge_builds_a_valid_submission_of_every_sample(db, tmp_path):
    write_sample_files(db, tmp_path / "preds")
    (tmp_path / "preds" / "manifest.jsonl").write_text("{}\n")  # other files are ignored
    merged = merge_sample_predictions(tmp_path / "preds", db["info_file"], tmp_path / "sub.json")
    assert merged["samples"] == len(db["tokens"]) and merged["boxes"] == len(db["tokens"])
    submission = load_submission(tmp_path / "sub.json")
    assert sorted(submission["results"]) == sorted(db["tokens"])
    assert submission["meta"]["use_camera"] is True


def test_merge_refuses_an_unfinished_run_and_writes_nothing(db, tmp_path):
    write_sample_files(db, tmp_path / "preds", skip=1)
    with pytest.raises(SubmissionError, match="1 of the 2 samples .* run tools/infer.py again"):
        merge_sample_predictions(tmp_path / "preds", db["info_file"], tmp_path / "sub.json")
    assert not (tmp_path / "sub.json").exists()


def test_merge_refuses_files_of_runs_with_different_meta(db, tmp_path):
    write_sample_files(db, tmp_path / "preds")
    path = tmp_path / "preds" / f"{db['tokens'][0]}.json"
    payload = json.loads(path.read_text())
    payload["meta"]["use_camera"] = False
    path.write_text(json.dumps(payload))
    with pytest.raises(SubmissionError, match="disagree on 'meta'"):
        merge_sample_predictions(tmp_path / "preds", db["info_file"], tmp_path / "sub.json")
    merged = merge_sample_predictions(tmp_path / "preds", db["info_file"], tmp_path / "sub.json",
                                      modality=dict(use_lidar=True))
    assert merged["meta"]["use_camera"] is False


def test_token_list_holds_every_sample_of_the_info_file(db, tmp_path):
    path = write_sample_tokens(db["info_file"], tmp_path / "tokens.txt")
    assert path.read_text().split() == db["tokens"] == sample_tokens(db["info_file"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_module_is_registered_by_the_package():
    assert inference_io.NuScenesSampleReader is INFERENCE_IO.get("NuScenesSampleReader")
