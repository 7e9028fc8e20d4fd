"""Remote-sensing demo step: SkySense on generated Sentinel-1/2 tiles, end to end on a CPU.

1. generate a small synthetic S1/S2 land-cover set (3 tiles, GeoTIFFs);
2. pre-train the tiny SkySense encoder briefly (contrastive, EMA teacher);
3. fine-tune the land-cover segmentor from the pre-trained encoder (tiles 32TNR, 32TPR);
4. infer the held-out tile 31TGL to a Cloud Optimized GeoTIFF with ``tools/infer.py``'s
   code path (window by window through the batch-inference engine), also with
   ``--drop sar`` and ``--drop optical``;
5. print the mIoU of each map against the tile's label raster;
6. save a PNG preview: RGB composite (B04/B03/B02) | predicted map | label.

Examples:
  python -m interlace.demo.remote_sensing --work-dir work_dirs/demo/remote_sensing
  python -m interlace.demo.remote_sensing --work-dir /tmp/rs --size 32 --dates 2 --tiny

``run(work_dir)`` returns (and writes to WORK_DIR/scores.json) the scores and output paths.
Everything runs in this process (mmengine Runner, the engine), so the imports are paid
once (earlier scores and times: configs/remote_sensing/skysense/README.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from interlace.core.engine.atomic_files import write_json_atomic

from interlace.demo import demo_step
from interlace.tools import infer as infer_tool

ROOT = Path(__file__).resolve().parents[3]  # the source checkout: configs/ is not installed
PRETRAIN_CONFIG = ROOT / "configs" / "remote_sensing" / "skysense_pretrain_synthetic_tiny.py"
SEGMENT_CONFIG = ROOT / "configs" / "remote_sensing" / "skysense_segment_synthetic_tiny.py"
HELD_OUT_TILE = "31TGL"  # the segment config's validation tile: never trained on
DROPS: dict[str, list[str]] = {"all streams": [], "no SAR": ["sar"], "no optical": ["optical"]}


def _cosine_schedule(epochs: int) -> list[dict]:
    return [dict(type="CosineAnnealingLR", T_max=epochs, eta_min=1e-5, by_epoch=True, begin=0,
                 end=epochs, convert_to_iter_based=True)]


def _train(config: Path, work_dir: Path, data_root: Path, epochs: int,
           load_from: Optional[str] = None, validate: bool = False) -> Any:
    """Train `config` with mmengine's Runner (as tools/train.py does); return the runner."""
    from mmengine.config import Config

    from interlace.core.engine.cli import build_runner

    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(work_dir)
    cfg.log_level = "WARNING"
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs  # validate once, at the end
    cfg.param_scheduler = _cosine_schedule(epochs)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(loader):
            cfg[loader].dataset.data_root = str(data_root)
    if not validate:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.load_from, cfg.resume = load_from, False
    runner = build_runner(cfg)
    runner.train()
    return runner


def _segmentor_init_from_pretraining(pretrained: Path, out: Path) -> tuple[Path, int]:
    """A segmentor checkpoint whose encoder and geo-context prototypes come from the
    pre-training checkpoint (head: fresh); return it and the number of tensors moved."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from interlace.core.engine.checkpoint import load_backbone_weights
    from interlace.core.engine.registry import MODELS

    init_default_scope("interlace")
    torch.manual_seed(0)
    segmentor = MODELS.build(Config.fromfile(str(SEGMENT_CONFIG)).model)
    moved = 0
    for part in ("encoder", "geo_prototypes"):
        module = getattr(segmentor, part, None)
        if module is not None:
            report = load_backbone_weights(module, pretrained, source_prefix=f"{part}.")
            moved += len(report.loaded)
    torch.save({"state_dict": segmentor.state_dict()}, out)
    return out, moved


def score_class_map(pred_path: Path, label_path: Path, num_classes: int) -> dict[str, float]:
    """mIoU / OA of a class-map raster against a label raster (same grid).

    Label pixels equal to the label's nodata are left out; a predicted nodata pixel where
    the label has a class counts as a miss (it is its own column of the confusion matrix)."""
    import rasterio

    from interlace.domains.remote_sensing.evaluation import confusion_matrix, segmentation_scores

    with rasterio.open(pred_path) as pred_src, rasterio.open(label_path) as label_src:
        if (pred_src.crs, pred_src.transform, pred_src.shape) != (label_src.crs, label_src.transform,
                                                                   label_src.shape):
            raise ValueError(f"{pred_path} and {label_path} are not on one grid")
        pred, label = pred_src.read(1).astype(np.int64), label_src.read(1).astype(np.int64)
        label_nodata = int(label_src.nodata) if label_src.nodata is not None else 255
    pred[(pred < 0) | (pred >= num_classes)] = num_classes          # nodata -> extra column
    label[label == label_nodata] = 255
    matrix = confusion_matrix(pred, label, num_classes + 1, ignore_index=255)
    scores = segmentation_scores(matrix)
    # As SegmentationMetric: the mean over classes in the label or the prediction.
    return dict(mIoU=float(np.nanmean(scores["iou"][:num_classes])), OA=scores["oa"])


def _rgb_composite(data_root: Path, tile: str) -> np.ndarray:
    """(3, H, W) reflectance B04, B03, B02 of the tile's first S2 date (clear, by the
    generator's design)."""
    import rasterio

    from interlace.domains.remote_sensing.data import S2_RGB_BANDS, S2_SCALE

    first = sorted((data_root / "s2").glob(f"S2_{tile}_*.tif"))[0]
    with rasterio.open(first) as src:
        indexes = [src.descriptions.index(band) + 1 for band in S2_RGB_BANDS]
        return src.read(indexes).astype(np.float32) / S2_SCALE


def run(work_dir: Path, size: int = 192, dates: int = 12, pretrain_epochs: int = 2,
        finetune_epochs: int = 15, seed: int = 0, quiet: bool = False) -> dict:
    """Run the six steps in `work_dir`; return ``dict(scores=..., outputs=..., seconds=...)``.

    Args:
        size, dates: synthetic tile side (pixels) and dates per series.
        pretrain_epochs, finetune_epochs: training lengths (tiny configs, CPU).
    """
    start = time.perf_counter()
    with demo_step("remote_sensing", seed, quiet) as say:
        return _run_steps(Path(work_dir).resolve(), size, dates, pretrain_epochs,
                          finetune_epochs, seed, say, start)


def _run_steps(work_dir: Path, size: int, dates: int, pretrain_epochs: int,
               finetune_epochs: int, seed: int, say, start: float) -> dict:
    """The body of :func:`run` (see there)."""
    from interlace.domains.remote_sensing.data import make_synthetic_s1s2
    from interlace.domains.remote_sensing.evaluation import save_map_preview

    data_root, maps_dir = work_dir / "data", work_dir / "maps"
    times: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        times[name] = round(time.perf_counter() - t0, 1)
        say(f"{name}: {times[name]} s")

    t0 = time.perf_counter()
    made = make_synthetic_s1s2(data_root, tiles=3, size=size, dates=dates, seed=seed)
    lap(f"1. generated {len(made['tiles'])} tiles of {size} px x {dates} dates in {data_root}", t0)

    t0 = time.perf_counter()
    _train(PRETRAIN_CONFIG, work_dir / "pretrain", data_root, pretrain_epochs)
    pretrained = work_dir / "pretrain" / f"epoch_{pretrain_epochs}.pth"
    lap(f"2. pre-trained {pretrain_epochs} epoch(s): {pretrained}", t0)

    t0 = time.perf_counter()
    init, moved = _segmentor_init_from_pretraining(pretrained, work_dir / "segmentor_init.pth")
    runner = _train(SEGMENT_CONFIG, work_dir / "finetune", data_root, finetune_epochs,
                    load_from=str(init), validate=True)
    checkpoint = work_dir / "finetune" / f"epoch_{finetune_epochs}.pth"
    chip_miou = float(runner.message_hub.get_scalar("val/seg/mIoU").current()) \
        if "val/seg/mIoU" in runner.message_hub.log_scalars else float("nan")
    lap(f"3. fine-tuned {finetune_epochs} epochs from {moved} pre-trained tensors: {checkpoint}", t0)

    t0 = time.perf_counter()
    label_path = data_root / "labels" / f"LABEL_{HELD_OUT_TILE}.tif"
    scores: dict[str, Any] = {}
    outputs: dict[str, str] = {}
    for name, drop in DROPS.items():
        out = maps_dir if not drop else maps_dir.parent / f"maps_drop_{drop[0]}"
        args = [str(SEGMENT_CONFIG), str(checkpoint), str(label_path), "--out", str(out),
                "--no-progress", "--device", "cpu"] + (["--drop", *drop] if drop else [])
        if infer_tool.main(args) != 0:
            raise RuntimeError(f"tools/infer.py {' '.join(args)} failed")
        cog = out / f"LABEL_{HELD_OUT_TILE}_classmap.tif"
        result = score_class_map(cog, label_path, num_classes=6)
        scores[f"mIoU {name}"] = round(result["mIoU"], 4)
        if not drop:
            scores["OA all streams"] = round(result["OA"], 4)
            outputs["class_map"] = str(cog)
    lap(f"4. inferred tile {HELD_OUT_TILE} to {outputs['class_map']} (and with --drop)", t0)
    for name, value in scores.items():
        say(f"5. {name}: {value:.3f}")
    scores["val chip mIoU"] = round(chip_miou, 4)

    import rasterio
    with rasterio.open(outputs["class_map"]) as src, rasterio.open(label_path) as label:
        class_map, reference = src.read(1), label.read(1)
    preview = save_map_preview(str(work_dir / f"preview_{HELD_OUT_TILE}.png"), class_map,
                               _rgb_composite(data_root, HELD_OUT_TILE), reference=reference)
    outputs.update(preview=preview, checkpoint=str(checkpoint), pretrained=str(pretrained),
                   data_root=str(data_root))
    say(f"6. preview (RGB | prediction | label): {preview}")
    result = dict(scores=scores, outputs=outputs, seconds=round(time.perf_counter() - start, 1),
                  step_seconds=times)
    write_json_atomic(work_dir / "scores.json", result)
    say(f"done in {result['seconds']} s; {work_dir / 'scores.json'}")
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                     epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="work_dirs/demo/remote_sensing")
    parser.add_argument("--size", type=int, default=192, help="tile side in pixels")
    parser.add_argument("--dates", type=int, default=12, help="dates per series")
    parser.add_argument("--tiny", action="store_true", help="1 + 1 epochs (a smoke test)")
    args = parser.parse_args(argv)
    epochs = dict(pretrain_epochs=1, finetune_epochs=1) if args.tiny else {}
    run(Path(args.work_dir), size=args.size, dates=args.dates, **epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
