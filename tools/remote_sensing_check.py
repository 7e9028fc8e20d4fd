"""Does the tiny SkySense set-up show what the issue claims, on generated S1/S2 tiles?

1. generate synthetic Sentinel-1/2 tiles (or use --data): the first --test-tiles tiles
   are held out for evaluation, the others are the training tiles;
2. pre-train the SkySense config on the training tiles (no labels) for --pretrain-min
   minutes of wall time (AdamW with warm-up then cosine decay driven by elapsed time, EMA
   teacher with momentum rising to 1), so the run fits its budget on any machine;
3. label efficiency: fine-tune the segmentor on 5 % of the training chips (--label-fraction
   of the 32 x 32 px chips of the training tiles, drawn at random; every pixel of a drawn
   chip is labelled, so it is also ~5 % of the labelled pixels) from the pre-trained encoder
   and from random initialisation, same steps and seed; mIoU on every chip of the
   held-out tiles;
4. clouds: on the same tiles with at least --cloudy-fraction of the dates of every chip
   cloudy (a date is cloudy in a chip when more than half of its S2 pixels are masked;
   the generator's own clouds count, and where there are fewer, more dates are masked
   out completely as overcast), train SAR+optical and optical-only
   (``drop_modalities=('sar',)``) on all training chips and compare mIoU;
5. time: the temporal model (all 12 dates) against a single-date model (T = 1: per chip
   one date drawn among its clear ones, S2 and the S1 acquisition of the same pass),
   with per-class IoU; crop_early / crop_late are the classes only time separates.

Fine-tuning uses a fixed number of steps (--finetune-steps, batch --batch-size) so the
compared models get the same updates; wall times are reported. Prints a table and writes
``result.json`` and the pre-trained weights into --out.

Examples:
  python tools/remote_sensing_check.py
  python tools/remote_sensing_check.py --tiles 4 --test-tiles 1 --size 128 \\
      --pretrain-min 0.5 --finetune-steps 20 --out work_dirs/remote_sensing_check_small
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

PRETRAIN_CONFIG = "configs/remote_sensing/skysense_pretrain_check_tiny.py"
SEGMENT_CONFIG = "configs/remote_sensing/skysense_segment_check_tiny.py"
TIME_ONLY_CLASSES = ("crop_early", "crop_late")
# A date counts as cloudy in a chip when more than this share of its S2 pixels is masked.
CLOUDY_CHIP_SHARE = 0.5

Batch = dict[str, Any]
View = Callable[[Batch, list[int], bool], Batch]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="existing synthetic S1/S2 folder (default: generate)")
    parser.add_argument("--tiles", type=int, default=8, help="tiles to generate")
    parser.add_argument("--test-tiles", type=int, default=2, help="held-out tiles (the first)")
    parser.add_argument("--size", type=int, default=256, help="tile side in 10 m pixels")
    parser.add_argument("--dates", type=int, default=12, help="dates per tile")
    parser.add_argument("--chip", type=int, default=32, help="chip side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="data, split and training seed")
    parser.add_argument("--pretrain-config", default=PRETRAIN_CONFIG)
    parser.add_argument("--segment-config", default=SEGMENT_CONFIG)
    parser.add_argument("--pretrain-min", type=float, default=8.0,
                        help="pre-training wall time, minutes")
    parser.add_argument("--pretrain-batch", type=int, default=8)
    parser.add_argument("--pretrained", help="pretrained.pth of an earlier run: skip step 2")
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="share of the pre-training budget spent warming the lr up")
    parser.add_argument("--finetune-steps", type=int, default=100, help="steps per fine-tune")
    parser.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch")
    parser.add_argument("--label-fraction", type=float, default=0.05,
                        help="share of the training chips whose labels are used in step 3")
    parser.add_argument("--cloudy-fraction", type=float, default=0.5,
                        help="least share of cloudy dates per chip in step 4")
    parser.add_argument("--skip", nargs="*", default=[], choices=["labels", "clouds", "time"],
                        help="experiments to leave out")
    # One thread: the tiny model's ops are small, and on a shared CPU more threads than
    # free cores made a step 3-4x slower in our runs.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="work_dirs/remote_sensing_check")
    return parser


def _init() -> None:
    import logging

    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import interlace.domains.remote_sensing.data  # noqa: F401  registers the dataset
    import interlace.domains.remote_sensing.models  # noqa: F401  registers the models
    init_default_scope("interlace")
    MMLogger.get_current_instance().setLevel(logging.WARNING)


# -- data ------------------------------------------------------------------------------

def collate(chips: list[dict], indices: list[int], rng=None) -> Batch:
    """`collate_time_series` of the chips; with `rng`, one random flip / 90° rotation."""
    import torch

    from interlace.domains.remote_sensing.data import collate_time_series
    batch = collate_time_series([chips[i] for i in indices])
    if rng is None:
        return batch
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))

    def move(x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, turns, dims=(-2, -1))
        return x.flip(-1) if flip else x
    for key in ("s2", "s2_valid", "s1", "s1_valid"):
        batch["inputs"][key] = move(batch["inputs"][key])
    for sample in batch["data_samples"]:
        sample.gt_sem_seg = move(sample.gt_sem_seg)
    return batch


def cloudy_share(valid_s2) -> "Any":
    """(B, T, H, W) bool validity -> (B, T) bool: is the date cloudy in the chip."""
    return (~valid_s2).float().flatten(2).mean(2) > CLOUDY_CHIP_SHARE


def make_cloudy_view(fraction: float, seed: int) -> View:
    """Mask whole dates as overcast so >= `fraction` of each chip's dates are cloudy;
    which dates depends only on the chip (its index), as real clouds would."""
    import torch

    def view(batch: Batch, indices: list[int], training: bool) -> Batch:
        inputs = batch["inputs"]
        cloudy = cloudy_share(inputs["s2_valid"])
        dates = inputs["s2"].shape[1]
        wanted = math.ceil(fraction * dates - 1e-9)
        for row, index in enumerate(indices):
            missing = wanted - int(cloudy[row].sum())
            if missing <= 0:
                continue
            generator = torch.Generator().manual_seed(seed * 100003 + index)
            clear = (~cloudy[row]).nonzero().flatten()
            chosen = clear[torch.randperm(len(clear), generator=generator)[:missing]]
            inputs["s2_valid"][row, chosen] = False
            inputs["s2"][row, chosen] = 0.0
        return batch
    return view


def make_single_date_view(seed: int) -> View:
    """Keep one date (S2 and S1 of the same index): a random clear one per chip, fixed per
    chip at evaluation, drawn anew at each training step."""
    import torch

    def view(batch: Batch, indices: list[int], training: bool) -> Batch:
        inputs = batch["inputs"]
        clear = ~cloudy_share(inputs["s2_valid"]) & (inputs["s2_doy"] > 0)
        picks = []
        for row, index in enumerate(indices):
            generator = None if training else torch.Generator().manual_seed(seed * 7919 + index)
            options = clear[row].nonzero().flatten()
            if len(options) == 0:
                options = torch.arange(clear.shape[1])
            picks.append(int(options[torch.randint(len(options), (1,), generator=generator)]))
        pick = torch.tensor(picks)
        rows = torch.arange(len(picks))
        for name in ("s2", "s1"):
            for key in (name, f"{name}_doy", f"{name}_valid"):
                inputs[key] = inputs[key][rows, pick].unsqueeze(1).contiguous()
        return batch
    return view


def identity_view(batch: Batch, indices: list[int], training: bool) -> Batch:
    return batch


# -- training --------------------------------------------------------------------------

def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up from 1 % over `warmup`, then cosine to 0, of progress in [0, 1]."""
    if progress < warmup:
        return 0.01 + 0.99 * progress / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / (1.0 - warmup))))


def _optimizer(cfg, model):
    import torch
    opt_cfg = dict(cfg.optim_wrapper.optimizer)
    opt_cfg.pop("type")
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **opt_cfg)


def pretrain(cfg, chips: list[dict], budget_s: float, warmup: float, batch_size: int,
             seed: int) -> tuple[Any, dict]:
    """Train the SkySense pre-trainer for `budget_s` seconds; returns (model, history)."""
    import numpy as np
    import torch

    from interlace.core.engine.registry import MODELS
    from interlace.domains.remote_sensing.models.ema_teacher import cosine_momentum
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.update_teacher(0.0)
    ema = next(h for h in cfg.custom_hooks if h["type"] == "EMATeacherHook")
    optimizer = _optimizer(cfg, model)
    base_lr = optimizer.param_groups[0]["lr"]
    rng = np.random.default_rng(seed)
    model.train()
    history, start, steps, window = [], time.perf_counter(), 0, []
    while True:
        progress = (time.perf_counter() - start) / budget_s
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = base_lr * _lr_factor(progress, warmup)
        batch = collate(chips, rng.choice(len(chips), batch_size, replace=False).tolist(), rng)
        losses = model(**model.data_preprocessor(batch, True), mode="loss")
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        # The teacher's momentum rises to 1 along a cosine of the *time* progress (DINO).
        model.update_teacher(cosine_momentum(ema["momentum"], 1.0, int(progress * 1000), 1000))
        steps += 1
        window.append(float(total.detach()))
        if steps % 50 == 0:
            row = dict(step=steps, seconds=round(time.perf_counter() - start, 1),
                       loss=round(sum(window) / len(window), 4))
            history.append(row)
            window = []
            print(f"[pretrain] " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return model, dict(history=history, steps=steps, seconds=round(time.perf_counter() - start, 1))


def finetune(cfg, chips: list[dict], indices: list[int], steps: int, batch_size: int,
             seed: int, view: View = identity_view, encoder_state: Optional[dict] = None,
             drop_modalities: tuple[str, ...] = (), name: str = "") -> tuple[Any, dict]:
    """`steps` AdamW steps (cosine lr) of the segmentor on the chips `indices`."""
    import numpy as np
    import torch

    from interlace.core.engine.registry import MODELS
    torch.manual_seed(seed)  # every compared model starts from the same random head
    model = MODELS.build(dict(cfg.model, drop_modalities=drop_modalities))
    if encoder_state is not None:
        missing = model.load_state_dict(encoder_state, strict=False)
        loaded = len(encoder_state) - len(missing.unexpected_keys)
        print(f"[{name}] loaded {loaded} pre-trained tensors", flush=True)
    optimizer = _optimizer(cfg, model)
    base_lr = optimizer.param_groups[0]["lr"]
    rng = np.random.default_rng(seed)
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = base_lr * _lr_factor(step / steps, 0.05)
        chosen = rng.choice(indices, min(batch_size, len(indices)), replace=False).tolist()
        batch = view(collate(chips, chosen, rng), chosen, True)
        loss = model(**model.data_preprocessor(batch, True), mode="loss")["loss_seg"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    seconds = round(time.perf_counter() - start, 1)
    print(f"[{name}] {steps} steps in {seconds} s, last loss "
          f"{sum(losses[-10:]) / max(1, len(losses[-10:])):.3f}", flush=True)
    return model, dict(steps=steps, seconds=seconds, final_loss=losses[-1] if losses else None)


def evaluate(model, chips: list[dict], view: View = identity_view, batch_size: int = 16,
             class_names: tuple[str, ...] = ()) -> dict:
    """mIoU / OA / per-class IoU of `model` over every chip (SegmentationMetric's maths)."""
    import numpy as np
    import torch

    from interlace.domains.remote_sensing.evaluation.segmentation_metric import (
        confusion_matrix, segmentation_scores)
    num_classes = model.head.num_classes
    matrix = np.zeros((num_classes, num_classes), np.int64)
    model.eval()
    with torch.no_grad():
        for first in range(0, len(chips), batch_size):
            indices = list(range(first, min(first + batch_size, len(chips))))
            batch = view(collate(chips, indices), indices, False)
            logits = model(**model.data_preprocessor(batch, False), mode="tensor")
            for pred, sample in zip(logits.argmax(1), batch["data_samples"]):
                matrix += confusion_matrix(pred, sample.gt_sem_seg, num_classes, model.ignore_index)
    scores = segmentation_scores(matrix)
    return dict(miou=100 * scores["miou"], oa=100 * scores["oa"],
                iou={n: 100 * float(v) for n, v in zip(class_names, scores["iou"])})


# -- the check -------------------------------------------------------------------------

def prepare_data(args, out: Path) -> tuple[str, list[str], list[str], str]:
    """(data root, training tiles, held-out tiles, band-statistics JSON)."""
    from interlace.domains.remote_sensing.data import (BAND_STATS_FILE, ModalitySpec,
                                                       build_catalog, make_synthetic_s1s2)
    from interlace.domains.remote_sensing.data.band_stats import (compute_band_stats,
                                                                  save_band_stats)
    from interlace.domains.remote_sensing.data.sentinel_dataset import DEFAULT_MODALITIES
    data_root = args.data
    if data_root is None:
        data_root = str(out / "data")
        summary = make_synthetic_s1s2(data_root, args.tiles, args.size, args.dates, args.seed)
        print(f"generated {len(summary['tiles'])} tiles of {args.size}^2 px x {args.dates} "
              f"dates under {data_root}", flush=True)
    stats = os.path.join(data_root, BAND_STATS_FILE)
    if not os.path.isfile(stats):
        # Normalised inputs (S1 is in dB, S2 in reflectance) train faster; the statistics
        # use no label, so computing them over every tile leaks nothing.
        specs = [ModalitySpec(name=n, **DEFAULT_MODALITIES[n]) for n in ("s2", "s1")]
        stats = str(out / BAND_STATS_FILE)
        save_band_stats(compute_band_stats(build_catalog(data_root, specs), specs), stats)
    with open(os.path.join(data_root, "synthetic_truth.json"), encoding="utf-8") as handle:
        tiles = list(json.load(handle)["tiles"])
    if not 0 < args.test_tiles < len(tiles):
        raise SystemExit(f"--test-tiles must be in [1, {len(tiles) - 1}] for {len(tiles)} tiles")
    return data_root, tiles[args.test_tiles:], tiles[:args.test_tiles], stats


def _load_split(data_root: str, tiles: list[str], chip: int, stats: str) -> list[dict]:
    from interlace.domains.remote_sensing.data import SentinelTimeSeriesDataset
    dataset = SentinelTimeSeriesDataset(data_root, chip_size=chip, tiles=tiles, band_stats=stats,
                                        modalities=dict(hr=None), test_mode=True)
    return [dataset[i] for i in range(len(dataset))]


def _row(name: str, metrics: dict, training: dict) -> dict:
    return dict(name=name, **metrics, train_seconds=training["seconds"])


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch
    from mmengine.config import Config

    from interlace.domains.remote_sensing.data import LANDCOVER_CLASSES
    _init()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_root, train_tiles, test_tiles, stats = prepare_data(args, out)
    train = _load_split(data_root, train_tiles, args.chip, stats)
    test = _load_split(data_root, test_tiles, args.chip, stats)
    seg_cfg = Config.fromfile(args.segment_config)
    classes = tuple(LANDCOVER_CLASSES)
    print(f"{len(train)} training chips ({', '.join(train_tiles)}), {len(test)} held-out "
          f"chips ({', '.join(test_tiles)}), {args.chip} px, {args.dates} dates", flush=True)
    result: dict = dict(data=data_root, train_tiles=train_tiles, test_tiles=test_tiles,
                        chip=args.chip, args=vars(args), experiments={})
    everything = list(range(len(train)))
    rows: dict[str, list[dict]] = {}

    def tune(name: str, indices, view=identity_view, state=None, drop=()) -> dict:
        model, training = finetune(seg_cfg, train, indices, args.finetune_steps,
                                   args.batch_size, args.seed, view, state, drop, name)
        row = _row(name, evaluate(model, test, view, class_names=classes), training)
        print(f"[{name}] held-out mIoU {row['miou']:.1f}", flush=True)
        return row

    if "labels" not in args.skip:
        if args.pretrained:  # the pre-training time is then the earlier run's
            weights, history = torch.load(args.pretrained), dict(loaded=args.pretrained,
                                                                 steps=0, seconds=0.0)
        else:
            model, history = pretrain(Config.fromfile(args.pretrain_config), train,
                                      args.pretrain_min * 60, args.warmup,
                                      args.pretrain_batch, args.seed)
            weights = model.state_dict()
            torch.save(weights, out / "pretrained.pth")
        state = {k: v for k, v in weights.items()
                 if k.startswith(("encoder.", "geo_prototypes."))}
        rng = np.random.default_rng(args.seed)
        count = max(1, round(args.label_fraction * len(train)))
        labelled = sorted(rng.choice(len(train), count, replace=False).tolist())
        pixels = sum(int((train[i]["label"] != 255).sum()) for i in labelled)
        total = sum(int((t["label"] != 255).sum()) for t in train)
        rows["labels"] = [tune("pre-trained", labelled, state=state),
                          tune("random init", labelled)]
        result["experiments"]["labels"] = dict(
            pretraining=history, labelled_chips=count, training_chips=len(train),
            labelled_pixels=pixels, labelled_pixel_share=pixels / max(total, 1),
            rows=rows["labels"],
            pretrain_plus_finetune_seconds=history["seconds"] + sum(
                r["train_seconds"] for r in rows["labels"]))
    if "clouds" not in args.skip:
        view = make_cloudy_view(args.cloudy_fraction, args.seed)
        natural = [float(cloudy_share(c["s2_valid"][None]).float().mean()) for c in train + test]
        forced = [float(cloudy_share(view(collate(train + test, [i]), [i], False)["inputs"]
                                     ["s2_valid"]).float().mean()) for i in range(len(train + test))]
        rows["clouds"] = [tune("SAR+optical", everything, view),
                          tune("optical only", everything, view, drop=("sar",))]
        result["experiments"]["clouds"] = dict(
            cloudy_date_share_generated=float(np.mean(natural)),
            cloudy_date_share_used=float(np.mean(forced)),
            min_cloudy_date_share_used=float(np.min(forced)), rows=rows["clouds"])
    if "time" not in args.skip:
        rows["time"] = [tune(f"temporal ({args.dates} dates)", everything),
                        tune("single date", everything, make_single_date_view(args.seed))]
        result["experiments"]["time"] = dict(rows=rows["time"], time_only_classes=TIME_ONLY_CLASSES)
    result["checks"] = checks(result["experiments"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_report(result, classes)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out / 'result.json'} ({result['seconds']:.0f} s in all)")
    return 0


def checks(experiments: dict) -> dict:
    """The three claims as numbers (and whether each holds)."""
    found: dict = {}
    if "labels" in experiments:
        pre, rand = experiments["labels"]["rows"]
        gain = pre["miou"] - rand["miou"]
        seconds = experiments["labels"]["pretrain_plus_finetune_seconds"]
        found["pretrained_minus_random_miou"] = dict(
            value=gain, holds=bool(gain >= 5.0 and seconds <= 20 * 60), seconds=seconds)
    if "clouds" in experiments:
        both, optical = experiments["clouds"]["rows"]
        gain = both["miou"] - optical["miou"]
        found["sar_optical_minus_optical_miou"] = dict(value=gain, holds=bool(gain >= 5.0))
    if "time" in experiments:
        temporal, single = experiments["time"]["rows"]
        gains = {c: temporal["iou"][c] - single["iou"][c] for c in TIME_ONLY_CLASSES}
        found["temporal_minus_single_date_iou"] = dict(
            value=gains, holds=bool(all(g > 0 for g in gains.values())))
    return found


def print_report(result: dict, classes: tuple[str, ...]) -> None:
    experiments = result["experiments"]
    titles = dict(labels="pre-trained vs random init, 5 % labels", clouds="SAR+optical vs "
                  "optical only, cloudy dates", time="temporal vs single date")
    short = [c[:10] for c in classes]
    print("\nmIoU / OA / per-class IoU (x100) on the held-out tiles "
          f"{', '.join(result['test_tiles'])}")
    print(f"{'model':<22}{'mIoU':>7}{'OA':>7}" + "".join(f"{c:>11}" for c in short)
          + f"{'train s':>9}")
    for key, experiment in experiments.items():
        print(f"-- {titles[key]}")
        for row in experiment["rows"]:
            print(f"{row['name']:<22}{row['miou']:7.1f}{row['oa']:7.1f}"
                  + "".join(f"{row['iou'][c]:11.1f}" for c in classes)
                  + f"{row['train_seconds']:9.0f}")
    if "labels" in experiments:
        e = experiments["labels"]
        print(f"\n5 % labels: {e['labelled_chips']} of {e['training_chips']} training chips "
              f"({100 * e['labelled_pixel_share']:.1f} % of the labelled pixels); pre-training "
              f"{e['pretraining']['steps']} steps in {e['pretraining']['seconds']:.0f} s; "
              f"pre-training + both fine-tunes {e['pretrain_plus_finetune_seconds'] / 60:.1f} min")
    if "clouds" in experiments:
        e = experiments["clouds"]
        print(f"cloudy dates per chip: {100 * e['cloudy_date_share_generated']:.0f} % as "
              f"generated, {100 * e['cloudy_date_share_used']:.0f} % used (at least "
              f"{100 * e['min_cloudy_date_share_used']:.0f} % in every chip)")
    for name, check in result["checks"].items():
        value = check["value"]
        shown = (", ".join(f"{k} {v:+.1f}" for k, v in value.items()) if isinstance(value, dict)
                 else f"{value:+.1f}")
        print(f"{name}: {shown}  -> {'holds' if check['holds'] else 'DOES NOT HOLD'}")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
