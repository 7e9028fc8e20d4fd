"""Data and step kinds of the medical check: the generated MIMIC-CXR-JPG set, the linear
probe of a pre-trained (or randomly initialised) image encoder, and the word grounding of
a model with token-level heads. Both evaluations call the package functions that
``tools/analysis_tools/linear_probe.py`` and ``medical_grounding.py`` call."""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, Optional, Sequence

__all__ = ["prepare_data", "probe_step", "grounding_step", "STEP_KINDS", "PROBE_LABELS"]

# The labels the generated set draws (the others are all negative there).
PROBE_LABELS = ("Lung Opacity", "Pleural Effusion", "Cardiomegaly", "Support Devices",
                "No Finding")


def prepare_data(data: dict) -> dict:
    """``make_synthetic_mimic(root, studies, seed)`` at ``image_size`` px, unless `root`
    already holds a set made with the same arguments."""
    from interlace.core.engine.atomic_files import write_json_atomic
    from interlace.domains.medical.data import make_synthetic_mimic
    root = data["root"]
    wanted = dict(studies=data["studies"], seed=data["seed"], image_size=data["image_size"])
    stamp = osp.join(root, "check_data.json")
    if osp.isfile(stamp) and json.load(open(stamp, encoding="utf-8")) == wanted:
        print(f"reusing {root}", flush=True)
    else:
        summary = make_synthetic_mimic(root, wanted["studies"], wanted["seed"],
                                       min_size=wanted["image_size"],
                                       max_size=wanted["image_size"])
        write_json_atomic(stamp, wanted)
        print(f"generated {summary['studies']} studies under {root}", flush=True)
    return dict(root=root, **wanted)


def _model(config: str, checkpoint: Optional[str], context: dict, seed: int):
    """The config's model with the checkpoint of a train step (or a file), or with random
    weights drawn from `seed` when `checkpoint` is None."""
    import torch
    from mmengine.registry import init_default_scope

    import interlace.domains.medical.models  # noqa: F401  registers MGCA and its parts
    from interlace.core.engine.cli import load_config
    from interlace.core.engine.registry import MODELS
    from interlace.domains.medical.models.published_weights import start_from_mgca
    init_default_scope("interlace")
    cfg = load_config(config)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        path = context["steps"][checkpoint]["checkpoint"] if checkpoint in context["steps"] \
            else checkpoint
        start_from_mgca(model, path, strict=True)  # the Pretrained initialiser, whole model
    return cfg, model.eval()


def _eval_transform(cfg):
    from interlace.domains.medical.data.transforms import (build_cxr_transforms,
                                                           eval_sizes_from_config)
    image_size, crop_size = eval_sizes_from_config(cfg)
    return build_cxr_transforms(False, image_size=image_size, crop_size=crop_size)


def probe_step(name: str, context: dict, config: str, checkpoint: Optional[str] = None,
               fractions: Sequence[float] = (0.01, 0.1, 1.0),
               seeds: Sequence[int] = (0, 1, 2, 3, 4), init_seed: int = 0) -> dict[str, Any]:
    """MGCA's linear probe: logistic regression on frozen global features of the train
    studies (a share `fractions` of them, per seed), AUROC on the validate studies.
    Metrics: ``auroc_<percent>`` (mean over labels, then over seeds) and its std."""
    from interlace.domains.medical.data import CHEXPERT_LABELS, MimicCxrDataset
    from interlace.domains.medical.evaluation import (extract_features, run_linear_probe,
                                                      select_labels)
    cfg, model = _model(config, checkpoint, context, init_seed)
    root = context["data"]["root"]
    columns = [list(CHEXPERT_LABELS).index(label) for label in PROBE_LABELS]
    transform = _eval_transform(cfg)
    splits = {}
    for split in ("train", "validate"):
        dataset = MimicCxrDataset(root, split=split, unit="study", pipeline=[transform])
        x, y, mask, _ = extract_features(model, dataset, 64, "cpu", progress=False)
        splits[split] = (x, y[:, columns], mask[:, columns])
    (tx, ty, tm), (vx, vy, vm) = splits["train"], splits["validate"]
    labels, skipped = select_labels(ty, tm, vy, vm, list(PROBE_LABELS))
    keep = [PROBE_LABELS.index(label) for label in labels]
    table = run_linear_probe(tx, ty[:, keep], tm[:, keep], vx, vy[:, keep], vm[:, keep],
                             label_names=labels, fractions=list(fractions), seeds=list(seeds))
    metrics = {}
    for fraction in fractions:
        summary = table["results"][str(float(fraction))]["mean_auroc"]
        key = f"auroc_{fraction * 100:g}pct".replace(".", "_")
        metrics[key], metrics[key + "_std"] = summary["mean"], summary["std"]
    return dict(config=config, checkpoint=checkpoint, metrics=metrics, probe=table,
                labels_skipped=skipped)


def grounding_step(name: str, context: dict, config: str, checkpoint: str,
                   max_images: int = 150) -> dict[str, Any]:
    """Word -> patch attention of the located words against the drawn findings' masks:
    per ``<finding>_<role>``, the attention mass over chance (``*_ratio``) and the pointing
    game's side / quadrant hit rates minus a random peak's (``*_side_gain``, ...)."""
    from interlace.domains.medical.evaluation.grounding import evaluate_grounding
    cfg, model = _model(config, checkpoint, context, 0)
    png = osp.join(context["out"], f"token_attention_{name}.png")
    result = evaluate_grounding(model, context["data"]["root"], _eval_transform(cfg),
                                max_images=max_images, png=png)
    metrics = {"images": float(result["images"])}
    for word, row in result["words"].items():
        key = word.replace(":", "_").replace(" ", "_")
        metrics[f"{key}_ratio"] = row["ratio"]
        for hit in ("point", "side", "quadrant"):
            if f"{hit}_rate" in row:
                metrics[f"{key}_{hit}_gain"] = row[f"{hit}_rate"] - row[f"{hit}_chance"]
    return dict(config=config, checkpoint=checkpoint, metrics=metrics, grounding=result)


STEP_KINDS = dict(probe=probe_step, grounding=grounding_step)
