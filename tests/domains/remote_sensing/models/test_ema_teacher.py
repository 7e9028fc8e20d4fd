"""EMA teacher: hand-computed update, schedule, hook, and no gradient into the teacher."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from interlace.domains.remote_sensing.models import (EMATeacherHook, cosine_momentum, ema_update_,
                                                     make_teacher)


def test_update_matches_hand_computed_numbers():
    student = nn.Linear(2, 1)
    teacher = make_teacher(student)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, -2.0]]))
        teacher.bias.fill_(0.5)
        student.weight.copy_(torch.tensor([[3.0, 2.0]]))
        student.bias.fill_(-1.5)
    ema_update_(teacher, student, momentum=0.9)
    # 0.9 * 1 + 0.1 * 3 = 1.2;  0.9 * -2 + 0.1 * 2 = -1.6;  0.9 * 0.5 + 0.1 * -1.5 = 0.3
    assert torch.allclose(teacher.weight, torch.tensor([[1.2, -1.6]]))
    assert torch.allclose(teacher.bias, torch.tensor([0.3]))
    ema_update_(teacher, student, momentum=0.9)  # second step: 0.9 * 1.2 + 0.3 = 1.38
    assert torch.allclose(teacher.weight[0, 0], torch.tensor(1.38))


def test_teacher_requires_no_gradient():
    teacher = make_teacher(nn.Linear(2, 2))
    assert not any(p.requires_grad for p in teacher.parameters())


def test_momentum_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError):
        ema_update_(nn.Linear(1, 1), nn.Linear(1, 1), 1.5)


def test_cosine_schedule_end_points_and_middle():
    assert cosine_momentum(0.9, 1.0, 0, 11) == pytest.approx(0.9)
    assert cosine_momentum(0.9, 1.0, 10, 11) == pytest.approx(1.0)
    assert cosine_momentum(0.9, 1.0, 5, 11) == pytest.approx(0.95)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.momenta = []

    def update_teacher(self, momentum):
        self.momenta.append(momentum)


def test_hook_updates_the_teacher_after_every_iteration():
    model = _Model()
    runner = SimpleNamespace(model=model, iter=0, max_iters=3)
    hook = EMATeacherHook(momentum=0.5, end_momentum=1.0)
    for step in range(3):
        runner.iter = step
        hook.after_train_iter(runner, batch_idx=step)
    assert model.momenta == pytest.approx([0.5, 0.75, 1.0])
    constant = EMATeacherHook(momentum=0.99)
    constant.after_train_iter(runner, batch_idx=0)
    assert model.momenta[-1] == 0.99 and not math.isnan(constant.last_momentum)
