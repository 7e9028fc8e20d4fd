"""The tiny driving config under torchrun: 2 CPU processes with gloo train it for a few
iterations, and tools/test.py on 2 ranks gathers both ranks' predictions into one nuScenes
submission that scores exactly as the single-process run's."""
from __future__ import annotations

import contextlib
import io
import json
import socket

import pytest

from tests.fixtures.tools import ROOT, run_tool

pytestmark = [pytest.mark.dist, pytest.mark.slow]

LIDAR_TINY = ROOT / "configs" / "driving" / "transfusion_l_synthetic_tiny.py"
OBJECT_SAMPLE = 3  # index of ObjectSample (GT paste) in the config's train pipeline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args, timeout: float = 400):
    return run_tool("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    free_port(), *args, "--launcher", "pytorch", timeout=timeout)


def run_log(work) -> str:
    """The Runner's log of the run in `work` (rank 0's)."""
    (log,) = work.glob("*/*.log")
    return log.read_text()


def assert_two_ranks(work) -> None:
    log = run_log(work)
    assert "Distributed launcher: pytorch" in log and "GPU number: 2" in log, log[:3000]


def data_options(root) -> list[str]:
    """--cfg-options pointing every dataset, the GT-paste database and the metric at
    `root` (the config resolved its `data_root` variable when it was loaded)."""
    return [f"train_dataloader.dataset.dataset.data_root={root}",
            f"train_dataloader.dataset.dataset.pipeline.{OBJECT_SAMPLE}.db_sampler.data_root="
            f"{root}",
            f"val_dataloader.dataset.data_root={root}",
            f"test_dataloader.dataset.data_root={root}",
            f"val_evaluator.data_root={root}",
            f"test_evaluator.data_root={root}"]


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """2 scenes x 3 samples: 3 train samples (one scene) and 3 val samples, an odd count so
    the 2-rank sampler pads one rank with a repeated sample."""
    from interlace.domains.driving.data.gt_paste import create_groundtruth_database
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.info_files import load_info_file
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    root = tmp_path_factory.mktemp("dist_driving") / "data"
    make_synthetic_nuscenes(root, scenes=2, samples_per_scene=3, version="v1.0-mini",
                            verbose=False)
    written = create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=3, progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        create_groundtruth_database(str(written["train"]["path"]), str(root), str(root),
                                    max_sweeps=3)
    _, infos = load_info_file(written["val"]["path"])
    return dict(root=root, val_tokens=[info["token"] for info in infos])


@pytest.fixture(scope="module")
def checkpoint(database, tmp_path_factory):
    """One epoch of the tiny LiDAR-only config on 2 ranks (class-balanced resampling of
    the 3 train samples: a few iterations of batch 2 per rank)."""
    work = tmp_path_factory.mktemp("dist_driving_train")
    proc = torchrun("tools/train.py", LIDAR_TINY, "--work-dir", work, "--cfg-options",
                    *data_options(database["root"]), "train_cfg.max_epochs=1",
                    "randomness.seed=0", "default_hooks.logger.interval=1")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert_two_ranks(work)
    assert "Epoch(train) [1][" in run_log(work)
    ckpt = work / "epoch_1.pth"
    assert ckpt.is_file(), sorted(p.name for p in work.iterdir())
    return ckpt


def test_two_rank_test_gathers_one_submission_scoring_as_one_process(database, checkpoint,
                                                                     tmp_path):
    single, dist = tmp_path / "single", tmp_path / "dist"
    options = ["--cfg-options", *data_options(database["root"])]
    proc = run_tool("tools/test.py", LIDAR_TINY, checkpoint, "--work-dir", single, *options,
                    timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    proc = torchrun("tools/test.py", LIDAR_TINY, checkpoint, "--work-dir", dist, *options,
                    timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert_two_ranks(dist)
    # 3 val samples on 2 ranks: 2 iterations each, rank 1's second one a padded repeat
    assert "Epoch(test) [2/2]" in run_log(dist)
    assert "Epoch(test) [3/3]" in run_log(single)

    results = {name: json.loads((work / "results_nusc.json").read_text())["results"]
               for name, work in (("single", single), ("dist", dist))}
    val_tokens = set(database["val_tokens"])
    assert len(val_tokens) == 3
    # every val sample once: the sampler's padding (a repeated sample on one rank) is not
    # counted twice, and no rank's share is missing
    assert set(results["dist"]) == set(results["single"]) == val_tokens
    assert len(results["dist"]) == len(val_tokens)
    for token in val_tokens:
        boxes = [sorted(results[name][token], key=lambda b: -b["detection_score"])
                 for name in ("single", "dist")]
        assert len(boxes[0]) == len(boxes[1]) > 0, token
        for a, b in zip(*boxes):
            assert a["detection_name"] == b["detection_name"], token
            assert a["attribute_name"] == b["attribute_name"], token
            for key in ("translation", "size", "rotation", "velocity"):
                assert a[key] == pytest.approx(b[key], abs=1e-4), (token, key)
            assert a["detection_score"] == pytest.approx(b["detection_score"], abs=1e-4)

    summaries = {name: json.loads((work / "metrics_summary.json").read_text())
                 for name, work in (("single", single), ("dist", dist))}
    for key in ("mean_ap", "nd_score"):
        assert summaries["dist"][key] == pytest.approx(summaries["single"][key], abs=1e-6), key
    counts = {name: sum(len(b) for b in r.values()) for name, r in results.items()}
    print(f"\nsingle: mAP={summaries['single']['mean_ap']:.6f} "
          f"NDS={summaries['single']['nd_score']:.6f} boxes={counts['single']}; "
          f"2 ranks: mAP={summaries['dist']['mean_ap']:.6f} "
          f"NDS={summaries['dist']['nd_score']:.6f} boxes={counts['dist']}; "
          f"samples={len(results['dist'])}")
