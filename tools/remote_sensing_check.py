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
   held-out tiles; repeated for --label-seeds labelled subsets (each its own seed), and
   the check is on the mean (pre-training + every fine-tune within 20 minutes);
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
import os
import sys
import time
from pathlib import Path
from typing import Optional

PRETRAIN_CONFIG = "configs/remote_sensing/skysense_pretrain_check_tiny.py"
SEGMENT_CONFIG = "configs/remote_sensing/skysense_segment_check_tiny.py"
TIME_ONLY_CLASSES = ("crop_early", "crop_late")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/, for checks.* (as benchmark.py)
from checks.remote_sensing_runs import (CLOUDY_CHIP_SHARE, Batch, View,  # noqa: E402,F401
                                        cloudy_share, collate, evaluate, finetune,
                                        identity_view, make_cloudy_view, make_single_date_view,
                                        pretrain)


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
    parser.add_argument("--pretrain-min", type=float, default=12.0,
                        help="pre-training wall time, minutes")
    parser.add_argument("--pretrain-batch", type=int, default=8)
    parser.add_argument("--pretrained", help="pretrained.pth of an earlier run: skip step 2")
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="share of the pre-training budget spent warming the lr up")
    parser.add_argument("--finetune-steps", type=int, default=100, help="steps per fine-tune")
    parser.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch")
    parser.add_argument("--label-seeds", type=int, default=5,
                        help="labelled subsets (seeds) the 5 %% comparison averages over")
    parser.add_argument("--protocols", nargs="+", default=["finetune", "frozen"],
                        choices=["finetune", "frozen"],
                        help="5 %% comparison: fine-tune everything, and/or train the head on a "
                             "frozen encoder")
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


def _mean_row(name: str, rows: list[dict]) -> dict:
    """Mean of per-seed rows (mIoU, OA, per-class IoU), with the mIoU's std over seeds."""
    import numpy as np
    mious = [r["miou"] for r in rows]
    return dict(name=name, miou=float(np.mean(mious)), miou_std=float(np.std(mious)),
                oa=float(np.mean([r["oa"] for r in rows])),
                iou={c: float(np.mean([r["iou"][c] for r in rows])) for c in rows[0]["iou"]},
                train_seconds=float(sum(r["train_seconds"] for r in rows)), seeds=len(rows))


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

    def tune(name: str, indices, view=identity_view, state=None, drop=(), seed=None,
             frozen=False) -> dict:
        model, training = finetune(seg_cfg, train, indices, args.finetune_steps,
                                   args.batch_size, args.seed if seed is None else seed, view,
                                   state, drop, name, freeze_encoder=frozen)
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
        count = max(1, round(args.label_fraction * len(train)))
        total = sum(int((t["label"] != 255).sum()) for t in train)
        subsets = []
        for seed in range(args.seed, args.seed + args.label_seeds):
            # Each seed draws its own labelled chips and its own head initialisation.
            rng = np.random.default_rng(seed)
            subsets.append((seed, sorted(rng.choice(len(train), count, replace=False).tolist())))
        share = float(np.mean([sum(int((train[i]["label"] != 255).sum()) for i in chips) / total
                               for _, chips in subsets]))
        for protocol in args.protocols:
            frozen, suffix = protocol == "frozen", (", frozen" if protocol == "frozen" else "")
            per_seed = [dict(seed=seed, chips=chips, rows=[
                tune(f"pre-trained{suffix}, seed {seed}", chips, state=state, seed=seed,
                     frozen=frozen),
                tune(f"random init{suffix}, seed {seed}", chips, seed=seed, frozen=frozen)])
                for seed, chips in subsets]
            rows[protocol] = [_mean_row(name + suffix, [run["rows"][k] for run in per_seed])
                              for k, name in enumerate(("pre-trained", "random init"))]
            key = "labels" if protocol == "finetune" else "labels_frozen"
            result["experiments"][key] = dict(
                protocol=protocol, pretraining=history, labelled_chips=count,
                training_chips=len(train), labelled_pixel_share=share, seeds=per_seed,
                gain_per_seed=[run["rows"][0]["miou"] - run["rows"][1]["miou"]
                               for run in per_seed], rows=rows[protocol],
                pretrain_plus_finetune_seconds=history["seconds"] + sum(
                    row["train_seconds"] for run in per_seed for row in run["rows"]))
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
    for key, name in (("labels", "pretrained_minus_random_miou"),
                      ("labels_frozen", "pretrained_minus_random_miou_frozen_encoder")):
        if key in experiments:
            pre, rand = experiments[key]["rows"]
            gain = pre["miou"] - rand["miou"]
            seconds = experiments[key]["pretrain_plus_finetune_seconds"]
            found[name] = dict(value=gain, holds=bool(gain >= 5.0 and seconds <= 20 * 60),
                               seconds=seconds)
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
    titles = dict(labels="pre-trained vs random init, 5 % labels, fine-tuned",
                  labels_frozen="pre-trained vs random init, 5 % labels, frozen encoder",
                  clouds="SAR+optical vs "
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
    for key in ("labels", "labels_frozen"):
        if key not in experiments:
            continue
        e = experiments[key]
        print(f"\n5 % labels, {e['protocol']}: {e['labelled_chips']} of {e['training_chips']} "
              f"training chips ({100 * e['labelled_pixel_share']:.1f} % of the labelled pixels), "
              f"mean of {len(e['gain_per_seed'])} labelled subsets: mIoU "
              + " vs ".join(f"{r['miou']:.1f} ± {r['miou_std']:.1f}" for r in e["rows"])
              + "; gain per subset " + ", ".join(f"{g:+.1f}" for g in e["gain_per_seed"])
              + f"; pre-training {e['pretraining']['steps']} steps in "
              f"{e['pretraining']['seconds']:.0f} s; pre-training + these fine-tunes "
              f"{e['pretrain_plus_finetune_seconds'] / 60:.1f} min")
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
