"""The pixel- and object-level terms of SkySense's multi-granularity contrast (Sec. 3.2).

The image-level term is :class:`interlace.core.alignment.InstanceContrastiveLoss` (which
takes its negatives from every rank); the two dense terms below compare embeddings of
corresponding grid positions, which exist only within a sample, so they need no
cross-rank communication.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.alignment import sinkhorn_knopp
from interlace.core.engine.registry import MODELS

__all__ = ["dense_info_nce", "ObjectContrastiveLoss"]


def dense_info_nce(query: Tensor, key: Tensor, valid: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE over positions, per sample: position i of `query` must pick position i of
    `key` among all valid positions of the same sample.

    Args:
        query: (B, N, P) embeddings (L2-normalised here).
        key: (B, N, P) embeddings of the same positions (e.g. the teacher's, detached by
            the caller, or another modality's).
        valid: (B, N) bool; invalid positions are neither queries nor negatives.
        temperature: softmax temperature.

    Returns:
        Scalar: mean cross-entropy over the valid query positions (0, still attached to
        the graph, when there are none).
    """
    query, key = F.normalize(query, dim=-1), F.normalize(key, dim=-1)
    logits = query @ key.transpose(1, 2) / temperature  # (B, N, N)
    logits = logits.masked_fill(~valid.unsqueeze(1), float("-inf"))
    if not valid.any():
        return logits.new_zeros(()) + 0.0 * query.sum()
    targets = torch.arange(query.shape[1], device=query.device).expand(query.shape[0], -1)
    rows = valid  # a valid row always has its (valid) positive, so its logits are finite
    return F.cross_entropy(logits[rows], targets[rows])


@MODELS.register_module()
class ObjectContrastiveLoss(nn.Module):
    """Object-level contrast: Sinkhorn-Knopp clusters of pixel features, then contrast of
    the clusters' pooled embeddings.

    For each sample, the teacher's pixel embeddings are softly assigned to K learned
    prototypes with Sinkhorn-Knopp (each prototype gets a share, so the clusters split the
    scene into "objects" instead of collapsing). Both views are pooled with the *same*
    assignment (the positions correspond), giving K student and K teacher object
    embeddings; each student object must pick its teacher object among all objects of
    the batch (InfoNCE). The prototypes learn by the student predicting the teacher's
    assignment (SwAV's swapped prediction), which also sharpens the student's features.

    Args:
        embed_dims: P, the embedding size.
        num_prototypes: K clusters per sample.
        temperature: InfoNCE and assignment-prediction temperature.
        epsilon, sinkhorn_iterations: Sinkhorn-Knopp settings.
        min_cluster_mass: clusters holding less than this many positions are skipped.
    """

    def __init__(self, embed_dims: int, num_prototypes: int = 8, temperature: float = 0.1,
                 epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 min_cluster_mass: float = 0.5) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(F.normalize(torch.randn(num_prototypes, embed_dims), dim=-1))
        self.temperature, self.epsilon = temperature, epsilon
        self.sinkhorn_iterations, self.min_cluster_mass = sinkhorn_iterations, min_cluster_mass

    def forward(self, student: Tensor, teacher: Tensor, valid: Tensor) -> Tensor:
        """Args: student (B, N, P), teacher (B, N, P) (no gradient taken), valid (B, N)
        bool. Returns the scalar loss (contrast + assignment prediction)."""
        prototypes = F.normalize(self.prototypes, dim=-1)
        student, teacher = F.normalize(student, dim=-1), F.normalize(teacher.detach(), dim=-1)
        student_objects, teacher_objects, predictions = [], [], []
        for b in range(student.shape[0]):
            s, t = student[b][valid[b]], teacher[b][valid[b]]  # (n, P)
            if s.shape[0] == 0:
                continue
            codes = sinkhorn_knopp(t @ prototypes.detach().T, self.epsilon,
                                   self.sinkhorn_iterations, distributed=False).to(s.dtype)
            log_prob = F.log_softmax(s @ prototypes.T / self.temperature, dim=-1)
            predictions.append(-(codes * log_prob).sum(dim=-1).mean())
            kept = codes.sum(dim=0) >= self.min_cluster_mass  # (K,)
            student_objects.append(F.normalize(codes.T[kept] @ s, dim=-1))
            teacher_objects.append(F.normalize(codes.T[kept] @ t, dim=-1))
        if not predictions:
            return 0.0 * (student.sum() + self.prototypes.sum())
        s_obj, t_obj = torch.cat(student_objects), torch.cat(teacher_objects)
        targets = torch.arange(s_obj.shape[0], device=s_obj.device)
        contrast = F.cross_entropy(s_obj @ t_obj.T / self.temperature, targets)
        return contrast + torch.stack(predictions).mean()
