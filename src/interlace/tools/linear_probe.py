"""Linear probe of an MGCA image encoder on MIMIC-CXR labels (AUROC, 1 / 10 / 100 %).

The image encoder is frozen: its global features of the train and validate studies are
extracted once, then a logistic regression per label is trained on a random share of the
training studies (per seed) and scored by AUROC on the validation studies.

Examples:
  python tools/misc/make_synthetic.py medical --out /tmp/mimic --studies 100
  python tools/analysis_tools/linear_probe.py configs/medical/mgca_resnet18_synthetic_tiny.py \\
      work_dirs/mgca_resnet18_synthetic_tiny/epoch_3.pth --data-root /tmp/mimic
  # the same encoder with random weights, as a baseline (CHECKPOINT may be `none`):
  python tools/analysis_tools/linear_probe.py configs/medical/mgca_resnet18_synthetic_tiny.py none \\
      --random-init --data-root /tmp/mimic --fractions 1.0 --seeds 0 --out-dir /tmp/probe

Writes ``linear_probe.json`` (the table, the labels scored and skipped, the checkpoint's
load report) and ``val_probabilities.csv`` (one row per validation study, from the 100 %
probe with the first seed) into --out-dir.
"""
from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import sys
import time

from interlace.core.engine.atomic_files import write_json_atomic
from interlace.core.engine.cli import ToolError, load_config

# The labels the synthetic MIMIC set draws (the others are all negative there).
DEFAULT_LABELS = ("Lung Opacity", "Pleural Effusion", "Cardiomegaly", "Support Devices",
                  "No Finding")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="model config (its `model` is built)")
    parser.add_argument("checkpoint", help="trained checkpoint; `none` with --random-init")
    parser.add_argument("--data-root", required=True,
                        help="MIMIC-CXR-JPG folder (files/ and the mimic-cxr-2.0.0-*.csv)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="shares of the training studies (default 0.01 0.1 1.0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", nargs="+", default=None,
                        help="labels to probe (default: %s; labels with a single class in "
                             "train or validation are skipped)" % ", ".join(DEFAULT_LABELS))
    parser.add_argument("--out-dir", default=None,
                        help="where to write the JSON and CSV (default "
                             "work_dirs/linear_probe/<config name>)")
    parser.add_argument("--random-init", action="store_true",
                        help="evaluate the encoder with random weights (ignore CHECKPOINT)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--projected", action="store_true",
                        help="probe the projected 128-d embedding instead of the encoder's "
                             "global feature (MGCA probes the latter)")
    parser.add_argument("--C", type=float, default=1.0,
                        help="inverse L2 strength of the logistic regression")
    return parser


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def build_model(cfg, checkpoint: str, random_init: bool):
    from mmengine.registry import init_default_scope

    import interlace.domains.medical.models  # noqa: F401  registers MGCA and encoders
    from interlace.core.engine.registry import MODELS

    init_default_scope(cfg.get("default_scope", "interlace"))
    if "model" not in cfg:
        raise ToolError(f"config {cfg.filename} has no `model`")
    model = MODELS.build(cfg.model)
    if not hasattr(model, "extract_image_features"):
        raise ToolError(f"{type(model).__name__} has no extract_image_features()")
    if random_init:
        print("--random-init: image encoder with random weights (checkpoint ignored)")
        return model, dict(random_init=True)
    from interlace.core.engine.weight_conversion import read_state_dict
    from interlace.domains.medical.models.published_weights import (is_mgca_checkpoint,
                                                                    start_from_mgca)

    # Both through the Pretrained initialiser (docs/weights.md): a released MGCA Lightning
    # .ckpt gives the image encoder only (its text side needs Bio_ClinicalBERT's config);
    # an Interlace checkpoint the whole model, non-strict since heads may differ between
    # configs and only the image side matters here.
    released = is_mgca_checkpoint(read_state_dict(checkpoint))
    report = start_from_mgca(model, checkpoint, image_encoder_only=released)
    encoder_missing = ([f"image_encoder.{k}" for k in report.missing] if released else
                       [k for k in report.missing if k.startswith("image_encoder.")])
    print(f"checkpoint {checkpoint}: {report.summary()}")
    if encoder_missing:
        print(f"warning: {len(encoder_missing)} image-encoder weights missing from the "
              f"checkpoint (left at their initial values)", file=sys.stderr)
    return model, dict(random_init=False, loaded=len(report.loaded),
                       missing=len(report.missing), image_encoder_missing=len(encoder_missing),
                       unexpected=len(report.unexpected),
                       shape_mismatched=len(report.shape_mismatched))


def _write_json(path: str, payload: dict) -> None:
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    write_json_atomic(path, clean(payload), indent=1)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not osp.isdir(args.data_root):
        raise FileNotFoundError(f"data root not found: {args.data_root}")
    if not args.random_init:
        if args.checkpoint.lower() == "none":
            raise ToolError("CHECKPOINT is `none`: give a checkpoint or --random-init")
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    if any(not 0 < f <= 1 for f in args.fractions):
        raise ToolError(f"--fractions must be in (0, 1], got {args.fractions}")
    cfg = load_config(args.config)
    out_dir = args.out_dir or osp.join(
        "work_dirs", "linear_probe", osp.splitext(osp.basename(args.config))[0])

    import numpy as np
    import torch

    from interlace.domains.medical.data import CHEXPERT_LABELS, MimicCxrDataset
    from interlace.domains.medical.data.transforms import (build_cxr_transforms,
                                                           eval_sizes_from_config)
    from interlace.domains.medical.evaluation import (extract_features, format_table,
                                                      run_linear_probe, select_labels,
                                                      write_probabilities_csv)

    wanted = list(args.labels or DEFAULT_LABELS)
    unknown = [name for name in wanted if name not in CHEXPERT_LABELS]
    if unknown:
        raise ToolError(f"unknown label(s) {unknown}; use CheXpert names: "
                        f"{', '.join(CHEXPERT_LABELS)}")
    columns = [list(CHEXPERT_LABELS).index(name) for name in wanted]

    torch.manual_seed(0)  # --random-init: the same random encoder every run
    model, load_info = build_model(cfg, args.checkpoint, args.random_init)
    image_size, crop_size = eval_sizes_from_config(cfg)
    transform = build_cxr_transforms(False, image_size=image_size, crop_size=crop_size)
    features = {}
    start = time.perf_counter()
    for split in ("train", "validate"):
        dataset = MimicCxrDataset(args.data_root, split=split, unit="study",
                                  pipeline=[transform])
        if len(dataset) == 0:
            raise ToolError(f"no {split} studies under {args.data_root}")
        print(f"{split}: {len(dataset)} studies, extracting features "
              f"({crop_size} px, batch {args.batch_size}, {args.device})")
        x, y, mask, ids = extract_features(model, dataset, args.batch_size, args.device,
                                           projected=args.projected)
        features[split] = (x, y[:, columns], mask[:, columns], ids)
    extract_s = time.perf_counter() - start

    (tx, ty, tm, _), (vx, vy, vm, val_ids) = features["train"], features["validate"]
    labels, skipped = select_labels(ty, tm, vy, vm, wanted)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")
    if not labels:
        raise ToolError("no label has both classes in train and validation; "
                        "more studies are needed")
    keep = [wanted.index(name) for name in labels]
    fractions = sorted(set(args.fractions))
    if 1.0 not in fractions:
        fractions.append(1.0)  # the probability CSV comes from the 100 % probe
    table = run_linear_probe(tx, ty[:, keep], tm[:, keep], vx, vy[:, keep], vm[:, keep],
                             label_names=labels, fractions=fractions, seeds=args.seeds,
                             C=args.C, keep_probabilities=True)
    fits = table.pop("fits")
    full = fits["1.0"][args.seeds[0]]
    if 1.0 not in args.fractions:
        table["results"].pop("1.0")
        table["skipped"].pop("1.0")
        table["fractions"].remove(1.0)

    print(f"\nLinear probe AUROC (x100, mean ± std over seeds {args.seeds}); "
          f"{len(tx)} train / {len(vx)} validation studies")
    print(format_table(table))

    os.makedirs(out_dir, exist_ok=True)
    csv_path = osp.join(out_dir, "val_probabilities.csv")
    write_probabilities_csv(csv_path, val_ids, full.probabilities, labels)
    json_path = osp.join(out_dir, "linear_probe.json")
    _write_json(json_path, dict(
        config=args.config, checkpoint=None if args.random_init else args.checkpoint,
        **load_info, data_root=args.data_root, feature="projected" if args.projected
        else "global", image_size=image_size, crop_size=crop_size,
        num_train=len(tx), num_validate=len(vx), labels_requested=wanted,
        labels_skipped=skipped, extract_seconds=round(extract_s, 2),
        classifier=f"per-label LogisticRegression(C={args.C}), standardised features",
        **table))
    print(f"\nwrote {json_path}\nwrote {csv_path} (100 % probe, seed {args.seeds[0]})")
    return 0
