"""The EMA teacher of SkySense's teacher-student pre-training (Sec. 3.2).

The teacher is a copy of the student whose weights follow the student's by an
exponential moving average, ``teacher = m * teacher + (1 - m) * student`` after every
optimiser step; it gets no gradient. A slowly moving teacher gives stable targets for the
contrastive losses (BYOL / DINO).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["make_teacher", "ema_update_", "cosine_momentum"]


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of `student` (no parameter requires a gradient)."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: every teacher parameter ``t <- m * t + (1 - m) * s``; buffers copied.

    Args:
        teacher, student: modules of identical structure.
        momentum: m in [0, 1]; 1 keeps the teacher, 0 copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise KeyError("teacher and student have different parameters: "
                       f"{sorted(set(t_params) ^ set(s_params))[:5]}")
    for name, t in t_params.items():
        t.mul_(momentum).add_(s_params[name].detach(), alpha=1.0 - momentum)
    s_buffers = dict(student.named_buffers())
    for name, buffer in teacher.named_buffers():
        buffer.copy_(s_buffers[name])


def cosine_momentum(start: float, end: float, step: int, total_steps: int) -> float:
    """DINO's schedule: m rises from `start` to `end` along a half cosine over the steps."""
    if total_steps <= 1:
        return end
    progress = min(max(step / (total_steps - 1), 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * progress) + 1.0) / 2.0
