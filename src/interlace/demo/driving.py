"""Driving demo step: DeepInteraction on a generated nuScenes-layout database, end to end
on a CPU.

1. generate a small synthetic nuScenes database (v1.0-mini layout: LiDAR sweeps, six
   camera JPEGs, tables that nuscenes-devkit loads);
2. build the mmdet3d v1.x info files (and, for the LiDAR-only detector, the GT-paste
   database);
3. train the tiny LiDAR + camera config (deepinteraction_r18_synthetic_tiny.py) briefly;
   ``--lidar-only`` trains transfusion_l_synthetic_tiny.py instead;
4. infer every val sample with ``tools/infer.py``'s code path (the batch-inference
   engine, one ``<token>.json`` per sample), also with ``--drop camera`` for the fusion
   model;
5. merge the per-sample files into the nuScenes submission JSON (validated);
6. score it with nuscenes-devkit's ``DetectionEval`` (detection_cvpr_2019);
7. print mAP / NDS;
8. render one val sample (BEV + six cameras, GT green, as many top-scoring predictions
   red) to a PNG.

Examples:
  python -m interlace.demo.driving --work-dir work_dirs/demo/driving
  python -m interlace.demo.driving --work-dir /tmp/drv --scenes 2 --samples-per-scene 2 --tiny

``run(work_dir)`` returns (and writes to WORK_DIR/scores.json) the scores and output
paths. Everything runs in this process (mmengine Runner, the engine), so the imports are
paid once. The default size (5 scenes x 6 samples: 24 train, 6 val samples; 2 epochs
= 220 iterations of batch 2) is a short run on one val scene: its scores are noisy and far
below a trained model's; the point is that every stage runs and the scores come from the
real devkit (earlier scores: configs/driving/deepinteraction/README.md).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from interlace.core.engine.atomic_files import write_json_atomic

from interlace.demo import demo_step
from interlace.tools import infer as infer_tool

ROOT = Path(__file__).resolve().parents[3]  # the source checkout: configs/ is not installed
CONFIGS = ROOT / "configs" / "driving"
FUSION = "deepinteraction_r18_synthetic_tiny"
LIDAR_ONLY = "transfusion_l_synthetic_tiny"
VERSION = "v1.0-mini"     # the tiny configs' version; its val split is mini_val
MAX_SWEEPS = 3            # the tiny configs load 3 sweeps


def training_config(name: str, work_dir: Path, data_root: Path, epochs: int):
    """The tiny config `name` pointed at `data_root`, `epochs` long (cosine schedule over
    them, one checkpoint at the end), without validation (the demo scores afterwards)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS / f"{name}.py"))
    cfg.work_dir = str(work_dir)
    cfg.log_level = "WARNING"
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    lr = cfg.optim_wrapper.optimizer.lr
    cfg.param_scheduler = [dict(type="CosineAnnealingLR", T_max=epochs, eta_min=lr * 0.01,
                                begin=0, end=epochs, by_epoch=True, convert_to_iter_based=True)]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs)
    train = cfg.train_dataloader.dataset
    train = train.dataset if train.type == "CBGSDataset" else train
    train.data_root = str(data_root)
    for transform in train.pipeline:
        if transform["type"] == "ObjectSample":  # GT paste reads its own database
            transform["db_sampler"]["data_root"] = str(data_root)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.load_from, cfg.resume = None, False
    return cfg


def _infer(config: Path, checkpoint: Path, tokens: Path, out: Path, data_root: Path,
           drop: Optional[list[str]] = None) -> None:
    """tools/infer.py over the listed tokens; a dropped modality is also dropped from the
    submission's meta flags (the writer cannot see what the model was told to ignore)."""
    options = [f"infer_cfg.reader.data_root={data_root}"]
    for name in drop or []:
        options.append(f"infer_cfg.writer.modality.use_{name}=False")
    args = [str(config), str(checkpoint), f"@{tokens}", "--out", str(out), "--no-progress",
            "--device", "cpu", "--cfg-options", *options] + (["--drop", *drop] if drop else [])
    if infer_tool.main(args) != 0:
        raise RuntimeError(f"tools/infer.py {' '.join(args)} failed")


def _score(nusc: Any, submission: Path, out_dir: Path) -> dict[str, float]:
    """DetectionEval on the version's val split -> mAP, NDS, TP errors, AP per class."""
    from interlace.domains.driving.evaluation.nuscenes_metric import (default_eval_set,
                                                                       run_detection_eval,
                                                                       summary_to_metrics)

    summary, _ = run_detection_eval(nusc, str(submission), default_eval_set(VERSION),
                                    str(out_dir))
    return summary_to_metrics(summary)


def _render(info_file: Path, data_root: Path, submission: Path, out: Path) -> tuple[Path, str]:
    """Draw the val sample with the most GT boxes and as many of its highest-scoring
    predictions (scores stay low after a short run, so a fixed threshold could leave
    none); return the PNG and the sample token."""
    from interlace.domains.driving.data.info_files import load_info_file
    from interlace.domains.driving.evaluation.submission import load_submission
    from interlace.domains.driving.evaluation.visualization import (gt_boxes,
                                                                    prediction_boxes,
                                                                    render_sample)

    _, infos = load_info_file(info_file)
    info = max(infos, key=lambda i: len(gt_boxes(i)))
    shown = max(len(gt_boxes(info)), 1)
    boxes, _, scores = prediction_boxes(load_submission(submission), info)  # by score
    boxes, scores = boxes[:shown], scores[:shown]
    lowest = f", scores >= {scores.min():.3f}" if len(scores) else ""
    png = render_sample(info, str(data_root), out, boxes, MAX_SWEEPS, bev_range=40.0,
                        title=f"sample {info['token']}: GT (green) and the {len(boxes)} "
                              f"highest-scoring predictions (red{lowest})")
    return png, str(info["token"])


def run(work_dir: Path, scenes: int = 5, samples_per_scene: int = 6, epochs: int = 2,
        lidar_only: bool = False, seed: int = 0, quiet: bool = False) -> dict:
    """Run the eight steps in `work_dir`; return ``dict(scores=..., outputs=..., seconds=...)``.

    Args:
        scenes, samples_per_scene: size of the generated database (about one scene in
            five is a val scene; at least one is).
        epochs: training epochs of the tiny config (class-balanced resampling makes an
            epoch about 9x the train samples).
        lidar_only: train TransFusion-L (LiDAR only) instead of DeepInteraction.
    """
    start = time.perf_counter()
    with demo_step("driving", seed, quiet) as say:
        return _run_steps(Path(work_dir).resolve(), scenes, samples_per_scene, epochs,
                          lidar_only, seed, say, start)


def _run_steps(work_dir: Path, scenes: int, samples_per_scene: int, epochs: int,
               lidar_only: bool, seed: int, say: Callable[[str], None], start: float) -> dict:
    """The body of :func:`run` (see there)."""
    from nuscenes import NuScenes

    from interlace.core.engine.cli import build_runner
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes
    from interlace.domains.driving.evaluation.inference_io import (merge_sample_predictions,
                                                                   write_sample_tokens)

    data_root = work_dir / "data"
    name = LIDAR_ONLY if lidar_only else FUSION
    times: dict[str, float] = {}

    def lap(label: str, t0: float) -> None:
        times[label.split(" ", 1)[0]] = round(time.perf_counter() - t0, 1)
        say(f"{label}: {times[label.split(' ', 1)[0]]} s")

    t0 = time.perf_counter()
    made = make_synthetic_nuscenes(data_root, scenes, samples_per_scene, version=VERSION,
                                   seed=seed, verbose=False)
    lap(f"1. generated {made['samples']} samples in {len(made['scenes'])} scenes "
        f"({made['splits']}) in {data_root}", t0)

    t0 = time.perf_counter()
    written = create_nuscenes_infos(data_root, VERSION, data_root, max_sweeps=MAX_SWEEPS,
                                    progress=False)
    if lidar_only:  # GT paste (ObjectSample) is in the LiDAR-only training pipeline only
        from interlace.domains.driving.data.gt_paste import create_groundtruth_database
        with contextlib.redirect_stdout(io.StringIO()):
            create_groundtruth_database(str(written["train"]["path"]), str(data_root),
                                        str(data_root), max_sweeps=MAX_SWEEPS)
    val_info = Path(written["val"]["path"])
    lap(f"2. info files: {written['train']['samples']} train, {written['val']['samples']} "
        f"val samples", t0)

    t0 = time.perf_counter()
    cfg = training_config(name, work_dir / "train", data_root, epochs)
    runner = build_runner(cfg)
    iterations = epochs * len(runner.train_dataloader)
    runner.train()
    checkpoint = work_dir / "train" / f"epoch_{epochs}.pth"
    lap(f"3. trained {name} for {epochs} epoch(s), {iterations} iterations: {checkpoint}", t0)

    t0 = time.perf_counter()
    tokens = write_sample_tokens(val_info, work_dir / "val_tokens.txt")
    infer_config = CONFIGS / f"{name}.py"  # its infer_cfg drives tools/infer.py
    runs = {"": None} if lidar_only else {"": None, " no camera": ["camera"]}
    pred_dirs = {label: work_dir / ("predictions" + (f"_drop_{drop[0]}" if drop else ""))
                 for label, drop in runs.items()}
    for label, drop in runs.items():
        _infer(infer_config, checkpoint, tokens, pred_dirs[label], data_root, drop)
    lap(f"4. inferred {written['val']['samples']} val samples to {pred_dirs['']}"
        + ("" if lidar_only else " (and with --drop camera)"), t0)

    t0 = time.perf_counter()
    submissions = {}
    for label, pred_dir in pred_dirs.items():
        out = work_dir / f"results_nusc{pred_dir.name[len('predictions'):]}.json"
        submissions[label] = Path(merge_sample_predictions(pred_dir, val_info, out)["path"])
    lap(f"5. submission JSON: {submissions['']}", t0)

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=VERSION, dataroot=str(data_root), verbose=False)
    scores: dict[str, float] = {}
    for label, submission in submissions.items():
        suffix = submission.stem[len("results_nusc"):]  # "" or "_drop_camera"
        metrics = _score(nusc, submission, work_dir / f"eval{suffix}")
        if label:
            scores.update({f"mAP{label}": metrics["mAP"], f"NDS{label}": metrics["NDS"]})
        else:
            scores.update(metrics)
    scores = {key: round(value, 4) for key, value in scores.items()}
    lap("6. scored with DetectionEval (detection_cvpr_2019, mini_val)", t0)
    for key in [k for k in scores if k.startswith(("mAP", "NDS"))]:
        say(f"7. {key}: {scores[key]:.4f}")

    t0 = time.perf_counter()
    png, token = _render(val_info, data_root, submissions[""], work_dir / "sample.png")
    lap(f"8. visualisation of sample {token}: {png}", t0)

    outputs = dict(submission=str(submissions[""]), predictions=str(pred_dirs[""]),
                   checkpoint=str(checkpoint), visualization=str(png), data_root=str(data_root),
                   config=str(CONFIGS / f"{name}.py"))
    result = dict(scores=scores, outputs=outputs, detector=name, epochs=epochs,
                  iterations=iterations, seconds=round(time.perf_counter() - start, 1),
                  step_seconds=times)
    write_json_atomic(work_dir / "scores.json", result)
    say(f"done in {result['seconds']} s; {work_dir / 'scores.json'}")
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="work_dirs/demo/driving")
    parser.add_argument("--scenes", type=int, default=5, help="generated scenes")
    parser.add_argument("--samples-per-scene", type=int, default=6, help="key frames per scene")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs")
    parser.add_argument("--lidar-only", action="store_true",
                        help="train TransFusion-L (LiDAR only) instead of DeepInteraction")
    parser.add_argument("--tiny", action="store_true", help="1 epoch (a smoke test)")
    args = parser.parse_args(argv)
    run(Path(args.work_dir), scenes=args.scenes, samples_per_scene=args.samples_per_scene,
        epochs=1 if args.tiny else args.epochs, lidar_only=args.lidar_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
