"""Data views and training loops of tools/remote_sensing_check.py (kept apart so the check
script stays a CLI): batch collation with flips, the cloudy and single-date views,
time-budgeted SkySense pre-training, fixed-step fine-tuning and held-out evaluation.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

Batch = dict[str, Any]
View = Callable[[Batch, list[int], bool], Batch]
# A date counts as cloudy in a chip when more than this share of its S2 pixels is masked.
CLOUDY_CHIP_SHARE = 0.5


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
             drop_modalities: tuple[str, ...] = (), name: str = "",
             freeze_encoder: bool = False) -> tuple[Any, dict]:
    """`steps` AdamW steps (cosine lr) of the segmentor on the chips `indices`; with
    `freeze_encoder` only the head (and the geo-prototype attention) learns and the
    encoder stays in eval mode (the frozen-encoder protocol of self-supervised papers)."""
    import numpy as np
    import torch

    from interlace.core.engine.registry import MODELS
    torch.manual_seed(seed)  # every compared model starts from the same random head
    model = MODELS.build(dict(cfg.model, drop_modalities=drop_modalities))
    if encoder_state is not None:
        missing = model.load_state_dict(encoder_state, strict=False)
        loaded = len(encoder_state) - len(missing.unexpected_keys)
        print(f"[{name}] loaded {loaded} pre-trained tensors", flush=True)
    if freeze_encoder:
        model.encoder.requires_grad_(False)
    optimizer = _optimizer(cfg, model)
    base_lr = optimizer.param_groups[0]["lr"]
    rng = np.random.default_rng(seed)
    model.train()
    if freeze_encoder:
        model.encoder.eval()
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
