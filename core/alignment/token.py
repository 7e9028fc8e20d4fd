"""Token-level alignment (MGCA's cross-attention-based token alignment, CTA).

Words are built from the tokenizer's sub-word pieces (:func:`aggregate_word_pieces`), their
importance weights are made robust to outliers (:func:`clip_and_renormalise`), and
:class:`TokenAlignmentLoss` asks each word to recognise its own visual context (attention
over the image's patches) among the contexts of the other words of the same sample, and each
patch to recognise its textual context among the other patches. Nothing here knows the
modalities: "words" and "patches" are any two sets of local tokens.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["aggregate_word_pieces", "clip_and_renormalise", "word_mask_and_weights",
           "TokenAlignmentLoss",
           "TokenAlignmentOutput", "DEFAULT_SPECIAL_TOKENS"]

DEFAULT_SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]"})
_CONTINUATION = "##"  # WordPiece marks a piece that continues the previous word


def aggregate_word_pieces(token_embeddings: Tensor, token_weights: Tensor,
                          tokens: Sequence[Sequence[str]],
                          special_tokens: frozenset[str] | set[str] = DEFAULT_SPECIAL_TOKENS,
                          ) -> tuple[Tensor, Tensor, Tensor, list[list[str]]]:
    """Merge WordPiece pieces into words.

    A piece starting with ``##`` joins the previous word (a leading ``##`` piece with no word
    before it, e.g. right after ``[CLS]``, starts a word of its own); special tokens are
    dropped, and they also end the current word. Word embedding = SUM of its pieces'
    embeddings, word weight = SUM of its pieces' weights (MGCA). Pieces past
    ``len(tokens[b])`` are ignored. Differentiable w.r.t. both tensors.

    Args:
        token_embeddings: (B, T, D) piece embeddings.
        token_weights: (B, T) piece weights (e.g. [CLS] attention to each piece).
        tokens: B lists of piece strings (``tokenizer.convert_ids_to_tokens``), each of
            length <= T, aligned with the tensors.
        special_tokens: pieces to drop.

    Returns:
        ``(word_embeddings (B, W, D), word_weights (B, W), word_mask (B, W) bool with True
        = padding, words)`` where W = max(1, the largest number of words in a sample),
        padding rows are zero, and ``words[b]`` lists sample b's words (without ``##``).
    """
    batch, length, dims = token_embeddings.shape
    if token_weights.shape != (batch, length) or len(tokens) != batch:
        raise ValueError("token_weights must be (B, T) and tokens must hold B sequences")
    words: list[list[str]] = []
    word_index = torch.full((batch, length), -1, dtype=torch.long)  # -1 = dropped piece
    for b, pieces in enumerate(tokens):
        if len(pieces) > length:
            raise ValueError(f"sample {b} has {len(pieces)} pieces for T={length}")
        sample: list[str] = []
        open_word = False  # whether a `##` piece may attach to sample[-1]
        for t, piece in enumerate(pieces):
            if piece in special_tokens:
                open_word = False
                continue
            if piece.startswith(_CONTINUATION) and open_word:
                sample[-1] += piece[len(_CONTINUATION):]
            else:
                sample.append(piece[len(_CONTINUATION):] if piece.startswith(_CONTINUATION)
                              else piece)
                open_word = True
            word_index[b, t] = len(sample) - 1
        words.append(sample)
    num_words = max(1, max((len(s) for s in words), default=0))

    # Scatter-add every kept piece into row (b * W + word); index_add_ keeps the autograd graph.
    word_index = word_index.to(token_embeddings.device)
    keep = word_index >= 0
    rows = (torch.arange(batch, device=word_index.device)[:, None] * num_words + word_index)[keep]
    word_embeddings = token_embeddings.new_zeros(batch * num_words, dims).index_add(
        0, rows, token_embeddings[keep]).view(batch, num_words, dims)
    word_weights = token_weights.new_zeros(batch * num_words).index_add(
        0, rows, token_weights[keep]).view(batch, num_words)
    counts = torch.tensor([len(s) for s in words], device=token_embeddings.device)
    word_mask = torch.arange(num_words, device=counts.device)[None, :] >= counts[:, None]
    return word_embeddings, word_weights, word_mask, words


def clip_and_renormalise(weights: Tensor, mask: Optional[Tensor] = None, low: float = 0.1,
                         high: float = 0.9) -> Tensor:
    """Clip each sample's valid weights to their [low, high] quantiles and renormalise.

    Clipping stops one or two tokens (often punctuation-like pieces that soak up [CLS]
    attention) from dominating the weighted loss. Quantiles use linear interpolation
    (``torch.quantile``'s default) over the valid positions only.

    Args:
        weights: (B, W) non-negative weights.
        mask: (B, W) bool, True = padding (ignored, output 0); None = all valid.
        low, high: quantile levels.

    Returns:
        (B, W) weights summing to 1 over each sample's valid positions, 0 at padding. A sample
        whose clipped valid weights sum to 0 gets uniform weights; one with no valid
        position gets all zeros.
    """
    if mask is None:
        mask = torch.zeros_like(weights, dtype=torch.bool)
    # NaN marks padding so nanquantile sees only the valid weights, vectorised over samples.
    marked = weights.masked_fill(mask, float("nan"))
    lo = torch.nanquantile(marked, low, dim=1, keepdim=True)
    hi = torch.nanquantile(marked, high, dim=1, keepdim=True)
    valid = ~mask
    clipped = torch.minimum(torch.maximum(weights, lo), hi)
    clipped = torch.where(valid, clipped, torch.zeros_like(clipped))  # also clears NaN rows
    total = clipped.sum(dim=1, keepdim=True)
    uniform = valid.to(weights.dtype) / valid.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.where(total > 0, clipped / total.clamp(min=torch.finfo(weights.dtype).tiny),
                       uniform)


def word_mask_and_weights(words: Tensor, word_mask: Optional[Tensor],
                          word_weights: Optional[Tensor],
                          clip_quantiles: tuple[float, float] = (0.1, 0.9),
                          ) -> tuple[Tensor, Tensor]:
    """The padding mask and the loss weights of (B, W, D) `words`, as the token losses use.

    Returns ``(mask (B, W) bool, True = padding; all False when None, weights (B, W))``:
    `word_weights` (uniform when None) detached, clipped to their `clip_quantiles` and
    renormalised over the valid words (:func:`clip_and_renormalise`), in ``words.dtype``.
    """
    batch, num_words = words.shape[:2]
    if word_mask is None:
        word_mask = torch.zeros(batch, num_words, dtype=torch.bool, device=words.device)
    with torch.no_grad():
        raw = (torch.ones(batch, num_words, dtype=words.dtype, device=words.device)
               if word_weights is None else word_weights.detach().to(words.dtype))
        weights = clip_and_renormalise(raw, word_mask, *clip_quantiles)
    return word_mask, weights


class TokenAlignmentOutput(NamedTuple):
    """What :class:`TokenAlignmentLoss` returns (unpacks like a tuple)."""

    loss: Tensor  # scalar, word_loss + patch_loss
    word_loss: Tensor  # scalar
    patch_loss: Tensor  # scalar
    word_to_patch_attention: Tensor  # (B, W, N), rows sum to 1


def _attend(queries: Tensor, keys: Tensor, temperature: float,
            key_mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Softmax(q k^T / T) over the keys, and the L2-normalised attended keys.

    queries (B, Q, D), keys (B, K, D), key_mask (B, K) True = padding ->
    (attention (B, Q, K), context (B, Q, D)).
    """
    sim = queries @ keys.transpose(1, 2) / temperature
    if key_mask is not None:
        # finfo.min rather than -inf: a sample with no valid key gets uniform (not NaN)
        # attention, and its loss terms carry zero weight anyway.
        sim = sim.masked_fill(key_mask[:, None, :], torch.finfo(sim.dtype).min)
    attention = sim.softmax(dim=-1)
    return attention, F.normalize(attention @ keys, dim=-1)


def _local_contrastive(tokens: Tensor, context: Tensor, weights: Tensor, temperature: float,
                       mask: Optional[Tensor]) -> Tensor:
    """Weighted cross-entropy matching each token with its own context, both directions.

    tokens, context (B, L, D) L2-normalised; weights (B, L) summing to 1 per sample;
    mask (B, L) True = padding. Returns a scalar: mean over the batch of the weighted sum
    over tokens, averaged over the token->context and context->token directions.
    """
    batch, length, _ = tokens.shape
    sim = tokens @ context.transpose(1, 2) / temperature  # (B, L, L); diagonal = match
    if mask is not None:
        # Padding tokens are no candidates, except on the diagonal so a padding row's
        # target logit stays finite (its weight is 0, so it adds nothing).
        eye = torch.eye(length, dtype=torch.bool, device=sim.device)
        sim = sim.masked_fill(mask[:, None, :] & ~eye, torch.finfo(sim.dtype).min)
        sim_t = sim.transpose(1, 2).masked_fill(mask[:, None, :] & ~eye,
                                                torch.finfo(sim.dtype).min)
    else:
        sim_t = sim.transpose(1, 2)
    targets = torch.arange(length, device=sim.device).repeat(batch)
    forward = F.cross_entropy(sim.reshape(batch * length, length), targets, reduction="none")
    backward = F.cross_entropy(sim_t.reshape(batch * length, length), targets,
                               reduction="none")
    per_token = 0.5 * (forward + backward) * weights.reshape(-1)
    return per_token.sum() / batch


@MODELS.register_module()
class TokenAlignmentLoss(nn.Module):
    """Bidirectional word <-> patch alignment (MGCA's CTA); loss = word part + patch part.

    Word part: each word attends over the sample's patches (softmax of cosine similarity /
    ``attention_temperature``) to get its visual context; the cross-entropy over the words
    of the same sample (logits = word_i . context_j / ``temperature``, the diagonal is the
    match), in both directions (word->contexts and context->words, averaged, as MGCA), is
    weighted by the word weights clipped to their 10th-90th percentile and renormalised.
    Patch part: symmetrically, each patch attends over the valid words, weighted by the
    patch weights (renormalised; uniform when None). Weights are detached: they only say how
    much each token counts. Embeddings are L2-normalised here.

    Args:
        attention_temperature: temperature of the cross-attention softmax (MGCA: 0.1).
        temperature: temperature of the matching cross-entropy (MGCA: 0.1).
        clip_quantiles: (low, high) quantiles for the word weights.
    """

    def __init__(self, attention_temperature: float = 0.1, temperature: float = 0.1,
                 clip_quantiles: tuple[float, float] = (0.1, 0.9)) -> None:
        super().__init__()
        self.attention_temperature = attention_temperature
        self.temperature = temperature
        self.clip_quantiles = tuple(clip_quantiles)

    def forward(self, words: Tensor, word_mask: Optional[Tensor], word_weights: Optional[Tensor],
                patches: Tensor, patch_weights: Optional[Tensor] = None) -> TokenAlignmentOutput:
        """Compute the token alignment loss.

        Args:
            words: (B, W, D) word embeddings.
            word_mask: (B, W) bool, True = padding word; None = all valid.
            word_weights: (B, W) raw word weights (clipped and renormalised here); None =
                uniform over valid words.
            patches: (B, N, D) patch embeddings (all valid).
            patch_weights: (B, N) patch weights, e.g. [CLS]->patch attention; None = uniform.

        Returns:
            :class:`TokenAlignmentOutput` with the scalar losses and the word->patch
            attention maps (B, W, N) (rows of padding words are meaningless).
        """
        word_mask, w_weights = word_mask_and_weights(words, word_mask, word_weights,
                                                     self.clip_quantiles)
        words = F.normalize(words, dim=-1)
        patches = F.normalize(patches, dim=-1)

        with torch.no_grad():
            if patch_weights is None:
                p_weights = torch.ones(patches.shape[:2], dtype=patches.dtype,
                                       device=patches.device)
            else:
                p_weights = patch_weights.detach().to(patches.dtype).clamp(min=0)
            p_weights = p_weights / p_weights.sum(dim=1, keepdim=True).clamp(
                min=torch.finfo(p_weights.dtype).tiny)

        attention, word_context = _attend(words, patches, self.attention_temperature, None)
        word_loss = _local_contrastive(words, word_context, w_weights, self.temperature,
                                       word_mask)
        _, patch_context = _attend(patches, words, self.attention_temperature, word_mask)
        patch_loss = _local_contrastive(patches, patch_context, p_weights, self.temperature,
                                        None)
        return TokenAlignmentOutput(word_loss + patch_loss, word_loss, patch_loss, attention)
