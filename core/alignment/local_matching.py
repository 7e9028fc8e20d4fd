"""Cross-sample local matching: does this report's wording find its regions in that image?

MGCA's token alignment (:class:`~.token.TokenAlignmentLoss`) contrasts a word's visual
context only with the contexts of the *other words of the same sample*. Nothing in it ties
a word to image content: a projection that sends every word to its own fixed position of
the patch grid solves it as well as one that finds the finding, and on a short run that
is the solution it takes (the attention of "effusion" falls on the effusion at chance).
GLoRIA (Huang et al., ICCV 2021) scores an image against a *report*: every word of report
j attends over the patches of image i, and the image-report score is the weighted mean
cosine between the words and their attended contexts; a symmetric InfoNCE over the batch
then asks report j to read better in its own image than in the others. A word that names
what only its image shows ("opacity", "right" in "right lower lobe opacity") can only
score in its own image by attending to where the finding is, so the attention grounds.

Nothing here knows the modalities: "words" and "patches" are any two sets of local tokens.
Under torch.distributed the negatives come from every rank, as in
:class:`~.instance.InstanceContrastiveLoss`: each rank scores its own reports against all
images and its own images against all reports, so the attention grows linearly with the
world size ((B_all, B, W, N) twice), not with its square.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .distributed import all_reduce_max, gather_with_grad, is_distributed, rank_offset
from .token import word_mask_and_weights

__all__ = ["LocalMatchingLoss", "LocalMatchingOutput"]


class LocalMatchingOutput(NamedTuple):
    """What :class:`LocalMatchingLoss` returns (unpacks like a tuple)."""

    loss: Tensor  # scalar
    scores: Tensor  # (B, B) image i x report j local matching scores (cosine, before 1/T)
    word_to_patch_attention: Tensor  # (B, W, N) of each report over its own image


@MODELS.register_module()
class LocalMatchingLoss(nn.Module):
    """Symmetric InfoNCE over image-report scores built from word->patch attention.

    ``score(i, j) = sum_w weight_jw * cos(word_jw, context_ijw)`` with
    ``context_ijw = normalise(softmax_n(word_jw . patch_in / attention_temperature) @
    patches_i)``; word weights are clipped to their ``clip_quantiles`` and renormalised
    (as in :class:`~.token.TokenAlignmentLoss`), padding words weigh 0. The loss is the
    mean of the image->report and report->image cross-entropies of ``scores / temperature``
    with the diagonal as target.

    Args:
        attention_temperature: temperature of the word->patch softmax (MGCA's CTA: 0.1).
        temperature: temperature of the batch contrast.
        clip_quantiles: (low, high) quantiles for the word weights.
        granularity: "report" contrasts the image-report scores (GLoRIA); "word" makes
            every word pick its own image among the batch's (cross-entropy over the images
            of ``cos(word_jw, context_ijw) / temperature``), the losses weighted by the word
            weights. A finding word is a few percent of a report's weight, so in a report
            score its evidence is diluted by the template words that match every image
            alike; alone, its logits are not.
        gather_distributed: take negatives from every rank (see :func:`gather_with_grad`).
            Each rank returns the mean over its own rows, so the mean of the ranks' losses
            is the single-process loss on the global batch (and, as for the instance loss,
            DDP's gradient averaging removes the ``world_size`` factor).
    """

    def __init__(self, attention_temperature: float = 0.1, temperature: float = 0.1,
                 clip_quantiles: tuple[float, float] = (0.1, 0.9),
                 granularity: str = "report", gather_distributed: bool = True) -> None:
        super().__init__()
        if granularity not in ("report", "word"):
            raise ValueError(f"granularity must be 'report' or 'word', got {granularity!r}")
        self.granularity = granularity
        if attention_temperature <= 0 or temperature <= 0:
            raise ValueError("temperatures must be > 0, got "
                             f"{attention_temperature} and {temperature}")
        self.attention_temperature = attention_temperature
        self.temperature = temperature
        self.clip_quantiles = tuple(clip_quantiles)
        self.gather_distributed = gather_distributed

    def forward(self, words: Tensor, word_mask: Optional[Tensor], word_weights: Optional[Tensor],
                patches: Tensor) -> LocalMatchingOutput:
        """Compute the loss.

        Args:
            words: (B, W, D) word embeddings of the B reports.
            word_mask: (B, W) bool, True = padding; None = all valid.
            word_weights: (B, W) raw word weights (clipped, renormalised and detached
                here); None = uniform over the valid words.
            patches: (B, N, D) patch embeddings of the B images, image i paired with
                report i.

        Returns:
            :class:`LocalMatchingOutput`: the scalar loss, the (B, B) score matrix and each
            report's (B, W, N) attention over its own image.
        """
        if words.dim() != 3 or patches.dim() != 3 or words.shape[0] != patches.shape[0] \
                or words.shape[2] != patches.shape[2]:
            raise ValueError(f"expected words (B, W, D) and patches (B, N, D), got "
                             f"{tuple(words.shape)} and {tuple(patches.shape)}")
        batch, num_words, _ = words.shape
        _, weights = word_mask_and_weights(words, word_mask, word_weights,
                                           self.clip_quantiles)  # (B, W), padding 0
        words = F.normalize(words, dim=-1)
        patches = F.normalize(patches, dim=-1)
        gather = self.gather_distributed and is_distributed()
        offset = rank_offset(batch) if gather else 0
        targets = torch.arange(batch, device=words.device) + offset
        # This rank's reports against every image: (B_all, B, W) cosines.
        patches_all = gather_with_grad(patches) if gather else patches
        attention, cosine = self._read(words, patches_all)
        scores = (cosine * weights[None]).sum(dim=-1)  # (B_all images, B reports)
        if self.granularity == "report":
            if gather:
                # This rank's images against every report: (B, B_all). Ranks pad their
                # reports to different lengths; all_gather needs one, padding weighs 0.
                longest = int(all_reduce_max(torch.tensor(num_words, device=words.device)))
                pad = (0, longest - num_words)
                words_all = gather_with_grad(F.pad(words, (0, 0) + pad))
                weights_all = gather_with_grad(F.pad(weights, pad))
                cosine_all = self._read(words_all, patches)[1]
                image_scores = (cosine_all * weights_all[None]).sum(dim=-1)
            else:
                image_scores = scores
            loss = 0.5 * (F.cross_entropy(image_scores / self.temperature, targets)
                          + F.cross_entropy(scores.T / self.temperature, targets))
        else:
            # Each word of this rank's report j picks its image among all: (B * W, B_all).
            logits = cosine.permute(1, 2, 0).reshape(batch * num_words, -1) / self.temperature
            per_word = F.cross_entropy(logits, targets.repeat_interleave(num_words),
                                       reduction="none").view(batch, num_words)
            loss = (per_word * weights).sum(dim=1).mean()
        local = torch.arange(batch, device=words.device)
        own = attention[targets, local]  # (B, W, N): report b over image b
        return LocalMatchingOutput(loss, scores[offset:offset + batch].detach(), own.detach())

    def _read(self, words: Tensor, patches: Tensor) -> tuple[Tensor, Tensor]:
        """Every report read in every image.

        words (B_j, W, D) and patches (B_i, N, D), both L2-normalised ->
        (attention (B_i, B_j, W, N), cosine (B_i, B_j, W) of each word with its context).
        """
        # sim[i, j, w, n]: word w of report j against patch n of image i.
        sim = torch.einsum("jwd,ind->ijwn", words, patches) / self.attention_temperature
        attention = sim.softmax(dim=-1)
        context = F.normalize(torch.einsum("ijwn,ind->ijwd", attention, patches), dim=-1)
        return attention, (context * words[None]).sum(dim=-1)
