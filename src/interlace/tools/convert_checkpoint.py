r"""Convert a published weights file into an Interlace checkpoint and report the key counts.

Examples:
  python tools/analysis_tools/convert_checkpoint.py resnet50-0676ba61.pth r50.pth --from torchvision
  python tools/analysis_tools/convert_checkpoint.py swin_tiny_patch4_window7_224.pth di_pp.pth \
      --from timm --config configs/driving/deepinteraction_pp_swint_nus.py
  python tools/analysis_tools/convert_checkpoint.py mask_rcnn_r50_fpn.pth r50.pth --from mmdet \
      --source-prefix backbone.
  python tools/analysis_tools/convert_checkpoint.py MGCA/resnet_50.ckpt mgca_r50.pth --from mgca \
      --config configs/medical/mgca_resnet50_mimic.py \
      --cfg-options model.text_encoder.model_path=checkpoints/Bio_ClinicalBERT

Then: python tools/analysis_tools/linear_probe.py CONFIG mgca_r50.pth ..., or
load_from=DST / tools/test.py CONFIG DST.

--from names the source: torchvision (ResNet files), timm (official / timm Swin, timm ViT),
mmdet (mmdet / mmpretrain ResNet or Swin; give --source-prefix backbone.), mgca (the
released Lightning .ckpt of MGCA). The layout within a family is detected from the keys;
the key maps are in interlace.core.engine.weight_key_maps and docs/weights.md. With
--config the file is loaded into the config's model (the backbone is found by its key
names) and DST holds the model's whole state dict: loaded / missing / unexpected are
counted against it. Without --config DST holds the renamed tensors alone (resnet.*,
swin.*, vit.*). Files are read with torch.load(weights_only=True); DST is written
atomically as {'state_dict': ..., 'meta': {converted_from, source_format, layout, counts}}.
"""
from __future__ import annotations

import argparse
import importlib
import json
from typing import Optional

EXAMPLES = __doc__.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
# Whole-model formats and the module that registers each (imported only when asked for).
PROVIDERS = {"mgca": "interlace.domains.medical.models.published_weights"}
FAMILIES = ("torchvision", "timm", "mmdet")


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description="Convert a published weights file (torchvision, timm, mmdet / mmpretrain, "
                    "MGCA) into an Interlace checkpoint.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n" + EXAMPLES)
    parser.add_argument("src", help="the published file (.pth, .pt, .ckpt)")
    parser.add_argument("dst", help="the Interlace checkpoint to write (.pth)")
    parser.add_argument("--from", dest="source_format", required=True,
                        choices=sorted([*FAMILIES, *PROVIDERS]), help="where SRC comes from")
    parser.add_argument("--config", metavar="CONFIG",
                        help="load into this config's model and count against it")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config settings (e.g. the text encoder's model_path)")
    parser.add_argument("--source-prefix", metavar="PREFIX",
                        help="take only SRC keys under PREFIX (backbone., img_backbone.)")
    parser.add_argument("--target-prefix", metavar="PREFIX",
                        help="where the backbone sits in the model (default: found by name)")
    parser.add_argument("--json", metavar="FILE", help="also write the counts as JSON")
    return parser


def _build_model(config: str, cfg_options: Optional[dict]):
    from mmengine.registry import init_default_scope

    from interlace.core.engine.cli import load_config
    from interlace.core.engine.registry import MODELS, register_all_modules

    cfg = load_config(config, cfg_options)
    register_all_modules()
    init_default_scope(cfg.get("default_scope", "interlace"))
    if "model" not in cfg:
        raise ValueError(f"config {config} has no `model`")
    return MODELS.build(cfg.model)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from interlace.core.engine.cli import ToolError
    from interlace.core.engine.weight_conversion import convert_checkpoint_file

    if args.source_format in PROVIDERS:
        importlib.import_module(PROVIDERS[args.source_format])
        if args.config is None:
            raise ToolError(f"--from {args.source_format} converts a whole model: give "
                            f"--config (e.g. configs/medical/mgca_resnet50_mimic.py)")
    model = _build_model(args.config, args.cfg_options) if args.config else None
    try:
        summary = convert_checkpoint_file(args.src, args.dst, args.source_format, model=model,
                                          source_prefix=args.source_prefix,
                                          target_prefix=args.target_prefix)
    except ValueError as error:  # CheckpointError too: a wrong layout, prefix or model
        raise ToolError(str(error)) from error
    counts = summary["counts"]
    print(f"{args.src} ({summary['layout']}) -> {args.dst}")
    print(", ".join(f"{name} {count}" for name, count in counts.items()))
    if model is None:
        print("(no --config: keys not checked against a model)")
    if args.json:
        from interlace.core.engine.atomic_files import write_json_atomic
        write_json_atomic(args.json, dict(summary, src=args.src))
    return 0
