r"""Build DeepInteraction's two-stage initialisation: the LiDAR-only (TransFusion-L)
checkpoint's LiDAR stream and head, merged with an image-backbone checkpoint, under the
key names of the DeepInteraction detector of CONFIG.

Examples:
  python tools/model_converters/merge_checkpoints.py configs/driving/deepinteraction_r50_nus.py \
      --lidar work_dirs/transfusion_l_nus/epoch_20.pth --image resnet50-0676ba61.pth \
      --out work_dirs/deepinteraction_r50_init.pth
  python tools/model_converters/merge_checkpoints.py configs/driving/deepinteraction_pp_swint_nus.py \
      --lidar transfusion_l.pth --image swin_tiny_patch4_window7_224.pth \
      --out di_pp_init.pth --report di_pp_init.json
  python tools/model_converters/merge_checkpoints.py configs/driving/deepinteraction_r18_synthetic_tiny.py \
      --lidar work_dirs/transfusion_l_synthetic_tiny/epoch_4.pth --out work_dirs/di_tiny_init.pth

Then train from it: python tools/train.py CONFIG --cfg-options load_from=OUT

The image checkpoint may be a torchvision / mmdet ResNet, an official / timm / mmdet Swin
(whole classifier or detector files; ``backbone.`` / ``img_backbone.`` prefixes are found,
--image-prefix picks another), or a detector checkpoint of ours (its camera_encoder.*).
Keys are mapped as documented in interlace.domains.driving.models.detectors.two_stage_init.
Files are read with torch.load(weights_only=True); OUT holds {'state_dict': merged,
'meta': {...}} with only the merged tensors (the other detector keys keep the detector's
own initialisation when loaded with load_from) and is written atomically.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

EXAMPLES = __doc__.split("Examples:\n", 1)[1].split("\n\n", 1)[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Merge a LiDAR-only checkpoint and an image-backbone checkpoint into "
                    "the initial weights of a DeepInteraction detector.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n" + EXAMPLES)
    parser.add_argument("config", help="the DeepInteraction config whose model names the keys")
    parser.add_argument("--lidar", metavar="CKPT",
                        help="LiDAR-only (TransFusion-L) checkpoint: ours or mmdet3d's")
    parser.add_argument("--image", metavar="CKPT", help="image backbone checkpoint")
    parser.add_argument("--image-prefix", metavar="PREFIX",
                        help="take the image backbone from keys under PREFIX (default: "
                             "'img_backbone.' or 'backbone.' when present)")
    parser.add_argument("--out", required=True, metavar="FILE", help="merged checkpoint (.pth)")
    parser.add_argument("--report", metavar="JSON",
                        help="also write which key came from where as JSON")
    from mmengine.config import DictAction

    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config entries before the model is built, e.g. "
                             "model.num_bev_levels=2")
    return parser


def build_target(config: str, cfg_options: Optional[dict] = None):
    """The detector of `config`, built with its own initialisation: (model, backbone type)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from interlace.core.engine.cli import ToolError
    from interlace.core.engine.registry import MODELS, register_all_modules

    register_all_modules()
    init_default_scope("interlace")
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if "model" not in cfg:
        raise ToolError(f"{config} has no `model`")
    model = MODELS.build(cfg.model)
    camera = getattr(model, "camera_encoder", None)
    backbone_type = type(camera.backbone).__name__ if camera is not None else ""
    return model, backbone_type


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from interlace.core.engine.atomic_files import atomic_path, write_text_atomic
    from interlace.core.engine.checkpoint import extract_state_dict, load_checkpoint_file
    from interlace.core.engine.cli import ToolError
    from interlace.domains.driving.models.detectors.two_stage_init import merge_two_stage

    if not args.lidar and not args.image:
        raise ToolError("give --lidar and/or --image: nothing to merge")
    model, backbone_type = build_target(args.config, args.cfg_options)
    if args.image and not backbone_type:
        raise ToolError(f"{args.config}: the model has no camera_encoder to put --image into")
    lidar = extract_state_dict(load_checkpoint_file(args.lidar)) if args.lidar else None
    image = extract_state_dict(load_checkpoint_file(args.image)) if args.image else None
    merged, report = merge_two_stage(model.state_dict(), lidar, image, backbone_type,
                                     args.image_prefix)
    if not merged:
        raise ToolError("no checkpoint tensor matched a detector key:\n" + report.summary())
    meta = dict(config=str(args.config), lidar=args.lidar, image=args.image,
                sources=dict(lidar=sorted(report.from_lidar), image=sorted(report.from_image)),
                random=report.random)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        torch.save({"state_dict": merged, "meta": meta}, tmp)
    print(f"{type(model).__name__} of {args.config}:")
    print(report.summary())
    print(f"wrote {len(merged)} tensors to {out}")
    if args.report:
        text = json.dumps(report.to_dict(), indent=1)
        write_text_atomic(args.report, text)
        print(f"wrote the key report to {args.report}")
    return 0
