"""Where do a trained MGCA's location words look? Token attention against finding masks.

Loads CONFIG's model with CHECKPOINT's weights and, on the validation / test images of a
generated MIMIC-CXR tree (``tools/misc/make_synthetic.py medical``; it writes the finding masks)
whose report names a located finding, scores the word->patch attention of the side
("right" / "left"), zone ("upper" / "lower") and finding ("opacity", "effusion") words:

* mass/chance: the attention mass inside the finding's mask over uniform attention's;
* the pointing game: how often the attention's peak patch is on the mask (point), on the
  finding's side of the image (side), in its quadrant (quadrant), each against the rate of
  a peak drawn at random (chance, in brackets).

Examples:
  python tools/misc/make_synthetic.py medical --out /tmp/mimic --studies 300
  python tools/analysis_tools/medical_grounding.py configs/medical/mgca_matching_resnet18_minilm_synthetic.py \\
      work_dirs/medical_check_v3/mgca_matching.pth --data-root /tmp/mimic --out-dir /tmp/ground

Writes ``grounding.json`` and ``token_attention_<finding>.png`` heat maps into --out-dir.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time

from interlace.core.engine.cli import ToolError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="model config (an MGCA with token-level heads)")
    parser.add_argument("checkpoint", help="trained weights (loaded with weights_only=True)")
    parser.add_argument("--data-root", required=True,
                        help="generated MIMIC-CXR-JPG tree with its masks/ folder")
    parser.add_argument("--max-images", type=int, default=150,
                        help="images with a located finding to score (default 150)")
    parser.add_argument("--out-dir", default=None,
                        help="where to write the JSON and PNGs (default "
                             "work_dirs/medical_grounding/<checkpoint name>)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not osp.isdir(args.data_root):
        raise FileNotFoundError(f"data root not found: {args.data_root}")
    if not osp.isdir(osp.join(args.data_root, "masks")):
        raise ToolError(f"{args.data_root} has no masks/ folder: grounding needs the finding "
                        "masks that tools/misc/make_synthetic.py medical writes")
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    if args.max_images < 1:
        raise ToolError(f"--max-images must be at least 1, got {args.max_images}")
    cfg = load_config(args.config)
    out_dir = args.out_dir or osp.join(
        "work_dirs", "medical_grounding", osp.splitext(osp.basename(args.checkpoint))[0])

    from mmengine.registry import init_default_scope

    import interlace.domains.medical.models  # noqa: F401  registers MGCA and encoders
    from interlace.core.engine.atomic_files import write_json_atomic
    from interlace.core.engine.checkpoint import load_weights
    from interlace.core.engine.registry import MODELS
    from interlace.domains.medical.data.transforms import (build_cxr_transforms,
                                                           eval_sizes_from_config)
    from interlace.domains.medical.evaluation.grounding import (evaluate_grounding,
                                                                format_grounding)

    init_default_scope(cfg.get("default_scope", "interlace"))
    model = MODELS.build(cfg.model)
    if getattr(model, "image_local_proj", None) is None:
        raise ToolError(f"{args.config}: the model has no token-level heads "
                        "(a ConVIRT-style config has nothing to localise)")
    report = load_weights(model, args.checkpoint)
    print(f"checkpoint {args.checkpoint}: {report.summary()}")
    image_size, crop_size = eval_sizes_from_config(cfg)
    transform = build_cxr_transforms(False, image_size=image_size, crop_size=crop_size)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    result = evaluate_grounding(model, args.data_root, transform, args.max_images,
                                png=osp.join(out_dir, "token_attention.png"))
    if not result["images"]:
        raise ToolError(f"no validate/test image under {args.data_root} has a report naming "
                        "a located finding")
    print(f"\nToken attention on {result['images']} validation/test images "
          f"({time.perf_counter() - start:.0f} s)")
    print("\n".join(format_grounding(result)))
    if result["skipped"]:
        print(f"\nskipped {len(result['skipped'])} finding(s) without a usable mask, e.g. "
              f"{result['skipped'][0]}", file=sys.stderr)
    path = osp.join(out_dir, "grounding.json")
    write_json_atomic(path, dict(config=args.config, checkpoint=args.checkpoint,
                                 data_root=args.data_root, **result))
    print(f"\nwrote {path}\nheat maps: {', '.join(result['png'])}")
    return 0
