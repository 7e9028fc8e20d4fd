"""Does MGCA pre-training on the generated MIMIC-CXR set learn? Train, probe, localise.

1. generate a synthetic MIMIC-CXR-JPG tree (or use --data);
2. pre-train each of --runs (by default: MGCA as published; MGCA whose token level adds
   cross-sample local matching; ConVIRT, the instance loss only), each for --budget-min
   minutes of wall time: the config's model, data pipeline and AdamW, with a
   linear warm-up (--warmup share of the budget) then cosine decay driven by elapsed time,
   so a run fits its budget on any machine;
3. linear probe (frozen global features, 1 / 10 / 100 % of the training labels, several
   seeds) of every run and of the same encoder with random weights;
4. token attention, for every run with token-level heads: for the validation reports'
   location words ("right" / "left", "upper" / "lower", "opacity", "effusion"), the share
   of the word->patch attention that falls inside the drawn finding's mask, against
   chance (uniform attention), and the pointing game (how often the attention's peak is
   on the mask, on the finding's side, in its quadrant, against a random peak); heat-map
   PNGs (token_attention_<run>_<finding>.png) of an opacity and an effusion image.
   ``tools/medical_grounding.py`` scores a saved checkpoint the same way.

Prints a table and writes ``result.json``, the checkpoints and the heat-map PNGs into
--out.

Examples:
  python tools/medical_pretraining_check.py --studies 1500 --budget-min 8
  python tools/medical_pretraining_check.py --data /tmp/mimic --budget-min 1 \\
      --fractions 0.1 1.0 --seeds 0 --out work_dirs/pretraining_check_small
  python tools/medical_pretraining_check.py --budget-min 15 \\
      --runs matching=configs/medical/mgca_matching_resnet18_minilm_synthetic.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

MGCA_CONFIG = "configs/medical/mgca_resnet18_minilm_synthetic.py"
MATCHING_CONFIG = "configs/medical/mgca_matching_resnet18_minilm_synthetic.py"
CONVIRT_CONFIG = "configs/medical/convirt_resnet18_minilm_synthetic.py"
DEFAULT_RUNS = (f"mgca={MGCA_CONFIG}", f"mgca_matching={MATCHING_CONFIG}",
                f"convirt={CONVIRT_CONFIG}")
LABELS = ("Lung Opacity", "Pleural Effusion", "Cardiomegaly", "Support Devices", "No Finding")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="existing synthetic MIMIC-CXR tree (default: generate)")
    parser.add_argument("--studies", type=int, default=1500, help="studies to generate")
    parser.add_argument("--image-size", type=int, default=192,
                        help="side of the generated images (px)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--budget-min", type=float, default=8.0,
                        help="pre-training wall time per model, minutes")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="what the budget counts: wall time, or this process's CPU "
                             "time (all threads; fairer on a machine shared with others)")
    parser.add_argument("--warmup", type=float, default=0.1,
                        help="share of the budget spent warming the lr up")
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), metavar="NAME=CONFIG",
                        help="pre-training runs; a run named 'convirt' is the baseline the "
                             "others are compared with")
    parser.add_argument("--skip-convirt", action="store_true",
                        help="leave the 'convirt' run out")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="work_dirs/medical_pretraining_check")
    return parser


def _init() -> None:
    from mmengine.registry import init_default_scope

    import interlace.domains.medical.data  # noqa: F401  registers datasets, transforms
    import interlace.domains.medical.models  # noqa: F401  registers MGCA and encoders
    init_default_scope("interlace")


def _build_model(cfg, seed: int):
    import torch

    from interlace.core.engine.registry import MODELS
    torch.manual_seed(seed)  # the random-init baseline and both runs start alike
    return MODELS.build(cfg.model)


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up from 1 % over `warmup`, then cosine to 0, of progress in [0, 1]."""
    if progress < warmup:
        return 0.01 + 0.99 * progress / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / (1.0 - warmup))))


def pretrain(cfg, data_root: str, budget_s: float, warmup: float, seed: int, name: str,
             clock: str = "wall"):
    """Train `cfg.model` on `data_root` for `budget_s` seconds of `clock` ('wall' or 'cpu',
    see --clock); returns (model, history)."""
    import torch
    from torch.utils.data import DataLoader

    from interlace.core.engine.registry import DATASETS
    from interlace.domains.medical.models import collate_image_reports

    model = _build_model(cfg, seed)
    loader_cfg = cfg.train_dataloader
    dataset = DATASETS.build(dict(loader_cfg.dataset, data_root=data_root))
    loader = DataLoader(dataset, batch_size=loader_cfg.batch_size, shuffle=True,
                        drop_last=True, collate_fn=collate_image_reports,
                        generator=torch.Generator().manual_seed(seed))
    opt_cfg = dict(cfg.optim_wrapper.optimizer)
    opt_cfg.pop("type")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, **opt_cfg)
    base_lr = opt_cfg["lr"]
    timer = time.perf_counter if clock == "wall" else time.process_time
    history, start, epoch, steps, done = [], timer(), 0, 0, False
    wall_start = time.perf_counter()
    model.train()
    while not done:
        model.set_epoch(epoch)
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            progress = (timer() - start) / budget_s
            if progress >= 1.0:
                done = True
                break
            for group in optimizer.param_groups:
                group["lr"] = base_lr * _lr_factor(progress, warmup)
            data = model.data_preprocessor(batch, True)
            losses = model(**data, mode="loss")
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            steps += 1
            count += 1
            for key, value in dict(losses, loss=total).items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
        if count:
            row = dict(epoch=epoch, steps=count, seconds=round(time.perf_counter() - wall_start, 1),
                       **{k: round(v / count, 4) for k, v in sums.items()})
            history.append(row)
            print(f"[{name}] " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        epoch += 1
    return model, dict(history=history, steps=steps, epochs=epoch, clock=clock,
                       seconds=round(time.perf_counter() - wall_start, 1),
                       budget_clock_seconds=round(timer() - start, 1))


def _eval_transform(cfg):
    from interlace.domains.medical.data.transforms import (build_cxr_transforms,
                                                           eval_sizes_from_config)
    image_size, crop_size = eval_sizes_from_config(cfg)
    return build_cxr_transforms(False, image_size=image_size, crop_size=crop_size)


def probe(model, cfg, data_root: str, fractions, seeds) -> dict:
    """Linear probe of the frozen global image features (MGCA's protocol)."""
    from interlace.domains.medical.data import CHEXPERT_LABELS, MimicCxrDataset
    from interlace.domains.medical.evaluation import (extract_features, run_linear_probe,
                                                      select_labels)
    columns = [list(CHEXPERT_LABELS).index(name) for name in LABELS]
    transform = _eval_transform(cfg)
    splits = {}
    for split in ("train", "validate"):
        dataset = MimicCxrDataset(data_root, split=split, unit="study", pipeline=[transform])
        x, y, mask, _ = extract_features(model, dataset, 64, "cpu", progress=False)
        splits[split] = (x, y[:, columns], mask[:, columns])
    (tx, ty, tm), (vx, vy, vm) = splits["train"], splits["validate"]
    labels, skipped = select_labels(ty, tm, vy, vm, list(LABELS))
    keep = [LABELS.index(name) for name in labels]
    table = run_linear_probe(tx, ty[:, keep], tm[:, keep], vx, vy[:, keep], vm[:, keep],
                             label_names=labels, fractions=fractions, seeds=seeds)
    table["labels_skipped"] = skipped
    return table


def localisation(model, cfg, data_root: str, png: Path) -> dict:
    """Token attention of the location / finding words against the findings' masks."""
    from interlace.domains.medical.evaluation.grounding import evaluate_grounding
    return evaluate_grounding(model, data_root, _eval_transform(cfg), png=png)


def _has_token_heads(model) -> bool:
    return getattr(model, "image_local_proj", None) is not None


def _parse_runs(items, skip_convirt: bool) -> dict[str, str]:
    runs = {}
    for item in items:
        name, sep, config = item.partition("=")
        if not sep or not name or not config:
            raise SystemExit(f"--runs: expected NAME=CONFIG, got {item!r}")
        if not Path(config).is_file():
            raise SystemExit(f"--runs: {name}: no config file {config}")
        runs[name] = config
    if skip_convirt:
        runs.pop("convirt", None)
    return runs


def _mean(table: dict, fraction: float) -> float:
    return table["results"][str(float(fraction))]["mean_auroc"]["mean"]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from mmengine.config import Config

    from interlace.domains.medical.data import make_synthetic_mimic
    runs = _parse_runs(args.runs, args.skip_convirt)  # before minutes of data generation
    _init()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_root = args.data
    if data_root is None:
        data_root = str(out / "data")
        summary = make_synthetic_mimic(data_root, args.studies, args.seed,
                                       min_size=args.image_size, max_size=args.image_size)
        print(f"generated {summary['studies']} studies under {data_root}")
    result: dict = dict(data=data_root, budget_min=args.budget_min, clock=args.clock,
                        seeds=args.seeds, fractions=args.fractions, runs={}, localisation={})
    tables = {}
    for name, config in runs.items():
        cfg = Config.fromfile(config)
        model, history = pretrain(cfg, data_root, args.budget_min * 60, args.warmup,
                                  args.seed, name, args.clock)
        torch.save(model.state_dict(), out / f"{name}.pth")
        tables[name] = probe(model, cfg, data_root, args.fractions, args.seeds)
        result["runs"][name] = dict(config=config, training=history, probe=tables[name])
        if _has_token_heads(model):
            result["localisation"][name] = localisation(model, cfg, data_root,
                                                        out / f"token_attention_{name}.png")
    # Random weights of the first run's encoder (all runs share the image encoder's
    # global path, and _build_model seeds alike).
    first = next(iter(runs.values()))
    cfg = Config.fromfile(first)
    tables["random"] = probe(_build_model(cfg, args.seed), cfg, data_root, args.fractions,
                             args.seeds)
    result["runs"]["random"] = dict(config=first, probe=tables["random"])

    print(f"\nLinear probe mean AUROC x100 over labels (mean ± std over seeds {args.seeds})")
    print("encoder        " + "".join(f"{f * 100:>14g} %" for f in args.fractions))
    for name, table in tables.items():
        cells = []
        for f in args.fractions:
            summary = table["results"][str(float(f))]["mean_auroc"]
            cells.append(f"{summary['mean'] * 100:9.1f} ± {summary['std'] * 100:4.1f}")
        print(f"{name:<15}" + "".join(f"{c:>16}" for c in cells))
    low = min(args.fractions)
    checks: dict = {}
    for name in runs:
        if name == "convirt":
            continue
        row = dict(minus_random_at_lowest_fraction=_mean(tables[name], low)
                   - _mean(tables["random"], low))
        if "convirt" in tables:
            row["minus_convirt"] = {str(f): _mean(tables[name], f)
                                    - _mean(tables["convirt"], f) for f in args.fractions}
        checks[name] = row
        line = f"\n{name} - random at {low * 100:g} %: " \
               f"{row['minus_random_at_lowest_fraction'] * 100:+.1f} AUROC points"
        if "minus_convirt" in row:
            line += "; - convirt: " + ", ".join(
                f"{v * 100:+.1f} at {float(k) * 100:g} %" for k, v in row["minus_convirt"].items())
        print(line)
    result["checks"] = checks
    from interlace.domains.medical.evaluation.grounding import format_grounding
    for name, loc in result["localisation"].items():
        print(f"\nToken attention of {name} on {loc['images']} validation/test images: "
              "attention mass in the finding's mask over uniform attention's; how often "
              "the peak is on the mask, on its side, in its quadrant (chance: a random peak)")
        print("\n".join(format_grounding(loc)))
        print("heat maps: " + ", ".join(loc["png"]))
    result["seconds"] = round(time.perf_counter() - started, 1)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out / 'result.json'} ({result['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
