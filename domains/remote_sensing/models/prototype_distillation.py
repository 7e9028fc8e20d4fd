"""Self-distillation over prototypes: the teacher-student "contrast" of SkySense's pixel and
image levels in its DINO form.

The student's embedding of a position (or of a pooled image) must predict the teacher's
soft assignment to K learned prototypes, computed from *another view* of the same ground
(other dates, another crop). Collapse is prevented the DINO way: the teacher's scores are
centred by a running mean over the (global) batch and sharpened with a lower temperature.

Why not InfoNCE over positions here: with the other cells of the same chip as negatives,
cells of one field are pushed apart, so the cheapest solution encodes *where in the chip*
a cell is (local geometry) rather than *what* it is, and a linear probe on the
pre-trained fused features can then do worse than on random ones (see the model zoo,
configs/remote_sensing/skysense/README.md).
Assigning cells to shared prototypes instead groups them by what is stable across dates
(spectrum, backscatter, seasonal curve), which is what land cover is.

No existing loss fits: ``core.alignment.PrototypeAlignmentLoss`` is SwAV's swapped
prediction with Sinkhorn targets between two modalities; this is DINO's centred and
sharpened teacher between two views of one stream, at every valid position.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.alignment.distributed import all_reduce_sum
from interlace.core.engine.registry import MODELS

__all__ = ["PrototypeDistillationLoss"]


@MODELS.register_module()
class PrototypeDistillationLoss(nn.Module):
    """Cross-entropy between a centred, sharpened teacher assignment and the student's.

    ``loss = mean_i  -sum_k softmax((t_i . c_k - centre_k) / tau_t) log softmax(s_i . c_k / tau_s)``
    over valid rows i, with ``c_k`` the L2-normalised prototypes and ``s``, ``t`` the
    L2-normalised embeddings. The centre is an EMA (``center_momentum``) of the teacher
    scores' mean over all valid rows of all ranks, updated after each training call.

    Args:
        embed_dims: P, the embedding size.
        num_prototypes: K.
        student_temperature: tau_s (DINO: 0.1).
        teacher_temperature: tau_t (DINO: 0.04; lower = sharper targets).
        center_momentum: EMA momentum of the centre (DINO: 0.9).
    """

    def __init__(self, embed_dims: int, num_prototypes: int = 64,
                 student_temperature: float = 0.1, teacher_temperature: float = 0.04,
                 center_momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 < teacher_temperature <= student_temperature:
            raise ValueError(f"need 0 < teacher_temperature <= student_temperature, got "
                             f"{teacher_temperature} and {student_temperature}")
        self.prototypes = nn.Parameter(F.normalize(torch.randn(num_prototypes, embed_dims), dim=-1))
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(num_prototypes))

    def forward(self, student: Tensor, teacher: Tensor, valid: Tensor | None = None) -> Tensor:
        """Args:
            student: (..., P) student embeddings.
            teacher: (..., P) teacher embeddings of the same rows (no gradient taken).
            valid: (...) bool, rows that count (None = all).

        Returns:
            Scalar loss (0, still attached to the graph, when no row is valid).
        """
        if student.shape != teacher.shape:
            raise ValueError(f"student {tuple(student.shape)} and teacher "
                             f"{tuple(teacher.shape)} must have the same shape")
        student, teacher = student.flatten(0, -2), teacher.detach().flatten(0, -2)
        if valid is None:
            valid = torch.ones(student.shape[0], dtype=torch.bool, device=student.device)
        valid = valid.reshape(-1)
        prototypes = F.normalize(self.prototypes, dim=-1)
        s_scores = F.normalize(student[valid], dim=-1) @ prototypes.T  # (n, K)
        with torch.no_grad():
            t_scores = F.normalize(teacher[valid], dim=-1) @ prototypes.detach().T
            targets = F.softmax((t_scores - self.center) / self.teacher_temperature, dim=-1)
        if self.training:
            self._update_center(t_scores)
        if s_scores.shape[0] == 0:
            return 0.0 * (student.sum() + self.prototypes.sum())
        log_prob = F.log_softmax(s_scores / self.student_temperature, dim=-1)
        return -(targets * log_prob).sum(dim=-1).mean()

    @torch.no_grad()
    def _update_center(self, t_scores: Tensor) -> None:
        """EMA of the teacher scores' mean over every rank's valid rows."""
        stats = torch.cat([t_scores.sum(dim=0), t_scores.new_tensor([t_scores.shape[0]])])
        stats = all_reduce_sum(stats.float())
        if stats[-1] > 0:
            mean = (stats[:-1] / stats[-1]).to(self.center.dtype)
            self.center.mul_(self.center_momentum).add_(mean, alpha=1.0 - self.center_momentum)

    def extra_repr(self) -> str:
        return (f"num_prototypes={self.prototypes.shape[0]}, "
                f"student_temperature={self.student_temperature}, "
                f"teacher_temperature={self.teacher_temperature}, "
                f"center_momentum={self.center_momentum}")
