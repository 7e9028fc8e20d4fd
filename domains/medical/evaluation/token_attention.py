"""Where does a word look? MGCA's word->patch attention, measured against finding masks.

Token alignment (CTA) makes each word attend over the image's patches (softmax of the
cosine similarity of the projected word and patch embeddings / attention temperature).
If pre-training learnt something local, the attention of "opacity" (or of the location
words "right" / "lower" in front of it) should fall inside the drawn opacity. This module:

* :func:`word_patch_attention` - the (W, h, w) attention maps of one image-report pair;
* :func:`finding_words` - which words of a report name a finding and where it is;
* :func:`attention_mass_in_mask` - the attention mass inside a mask, and its chance level;
* :func:`attention_peak_hits` - whether the attention's peak falls on the finding, on its
  side, in its quadrant (the pointing game), and how often a random peak would;
* :func:`save_attention_overlay` - a heat-map PNG of a word's attention over the image.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from interlace.core.engine.atomic_files import atomic_path

__all__ = ["WordAttention", "word_patch_attention", "finding_words", "attention_mass_in_mask",
           "attention_peak_hits", "save_attention_overlay", "SIDE_WORDS", "ZONE_WORDS"]

SIDE_WORDS = ("right", "left")
ZONE_WORDS = ("upper", "lower")


class WordAttention(NamedTuple):
    """What :func:`word_patch_attention` returns."""

    words: list[str]  # the report's W words (pieces merged)
    attention: Tensor  # (W, h, w), each map sums to 1 over the patches


@torch.no_grad()
def word_patch_attention(model: torch.nn.Module, image: Tensor, report: str,
                         temperature: Optional[float] = None) -> WordAttention:
    """Word->patch attention of an :class:`~interlace.domains.medical.models.MGCA` model.

    Args:
        model: an MGCA with a token loss (it has ``image_local_proj`` / ``word_local_proj``);
            run in eval mode here (its mode is restored afterwards).
        image: (C, H, W) normalised image (the eval transform's output).
        report: the report text.
        temperature: attention softmax temperature (default: the token loss's, else the
            local matching loss's).

    Returns:
        :class:`WordAttention` with the words and their (W, h, w) maps, h = w = the side of
        the square patch grid (ResNet: H / 16; ViT: H / patch size).
    """
    if getattr(model, "image_local_proj", None) is None:
        raise ValueError("the model has no token alignment heads (ConVIRT-style config)")
    if temperature is None:
        loss = model.token_loss if model.token_loss is not None else model.local_matching_loss
        temperature = loss.attention_temperature
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        features = model.image_encoder(image[None].to(device))
        text = model.text_encoder([report])
        patches = F.normalize(model.image_local_proj(features.local_features), dim=-1)[0]
        words = F.normalize(model.word_local_proj(text.word_embeddings, text.word_mask),
                            dim=-1)[0]
    finally:
        model.train(was_training)
    num_words, num_patches = len(text.words[0]), patches.shape[0]
    side = int(round(num_patches ** 0.5))
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    attention = (words[:num_words] @ patches.T / temperature).softmax(dim=-1)
    return WordAttention(text.words[0], attention.reshape(num_words, side, side).cpu())


def finding_words(words: Sequence[str]) -> list[tuple[int, str, str]]:
    """Words naming where a finding is, as ``(word index, finding, role)``.

    Recognises the generated reports' phrasing: ``<side> <zone> lobe opacity`` (roles
    ``side``, ``zone``, ``finding`` for opacity) and ``<side> pleural effusion`` (``side``,
    ``finding`` for effusion); negated mentions ("no pleural effusion") have no side word
    in front and are skipped.
    """
    found = []
    for i, word in enumerate(words):
        if word == "opacity" and i >= 3 and words[i - 1] == "lobe" \
                and words[i - 2] in ZONE_WORDS and words[i - 3] in SIDE_WORDS:
            found += [(i - 3, "opacity", "side"), (i - 2, "opacity", "zone"),
                      (i, "opacity", "finding")]
        elif word == "effusion" and i >= 2 and words[i - 1] == "pleural" \
                and words[i - 2] in SIDE_WORDS:
            found += [(i - 2, "effusion", "side"), (i, "effusion", "finding")]
    return found


def attention_mass_in_mask(attention: Tensor | np.ndarray,
                           mask: Tensor | np.ndarray) -> tuple[float, float]:
    """Attention mass inside a mask, and the same for uniform attention (chance).

    Args:
        attention: (h, w) map summing to 1.
        mask: (H, W) bool mask in the same (transformed) image frame, H and W multiples of
            h and w; each patch counts with the share of its pixels inside the mask.

    Returns:
        ``(mass, chance)``: sum over patches of attention * covered share, and the mean
        covered share (the mass of uniform attention).
    """
    attention = torch.as_tensor(np.asarray(attention), dtype=torch.float64)
    mask = torch.as_tensor(np.asarray(mask), dtype=torch.float64)
    covered = F.adaptive_avg_pool2d(mask[None, None], tuple(attention.shape))[0, 0]
    return float((attention * covered).sum()), float(covered.mean())


def attention_peak_hits(attention: Tensor | np.ndarray,
                        mask: Tensor | np.ndarray) -> dict[str, tuple[bool, float]]:
    """The pointing game: does the attention's peak patch land on the finding?

    The mass in the mask (:func:`attention_mass_in_mask`) rewards attention spread near a
    finding; the peak says where a word points. Three hits, from strict to loose:

    * ``point``: the peak patch holds a pixel of the mask;
    * ``side``: the peak patch's centre is on the same half of the image, left or right of
      the vertical midline, as the mask's centroid (a hemithorax, for a frontal film);
    * ``quadrant``: on the same side and on the same half, above or below the horizontal
      midline (roughly upper / lower zone: the generated lungs are centred at 42-48 % of
      the height).

    A patch whose centre lies on a midline is on neither half.

    Args:
        attention: (h, w) map; its largest entry (the first, on ties) is the peak.
        mask: (H, W) bool mask in the same (transformed) image frame, H >= h, W >= w.

    Returns:
        ``{"point" | "side" | "quadrant": (hit, chance)}``, chance being the share of
        patches that would hit, i.e. the hit rate of a peak drawn uniformly at random.

    Raises:
        ValueError: for an empty mask (nothing to point at) or a mask smaller than the map.
    """
    attention = np.asarray(attention, dtype=np.float64)
    mask = torch.as_tensor(np.asarray(mask, dtype=bool))
    (h, w), (height, width) = attention.shape, tuple(mask.shape)
    if height < h or width < w:
        raise ValueError(f"mask {height}x{width} is smaller than the {h}x{w} attention map")
    if not mask.any():
        raise ValueError("the mask is empty: no finding to point at")
    covered = F.adaptive_max_pool2d(mask[None, None].float(), (h, w))[0, 0].numpy() > 0
    rows, cols = np.nonzero(mask.numpy())
    # Pixel centres, and patch centres, in pixels from the top-left corner.
    centroid_y, centroid_x = rows.mean() + 0.5, cols.mean() + 0.5
    patch_y, patch_x = (np.arange(h) + 0.5) * height / h, (np.arange(w) + 0.5) * width / w
    on_side = np.sign(patch_x - width / 2) == np.sign(centroid_x - width / 2)
    on_level = np.sign(patch_y - height / 2) == np.sign(centroid_y - height / 2)
    row, col = np.unravel_index(int(attention.argmax()), attention.shape)
    return dict(point=(bool(covered[row, col]), float(covered.mean())),
                side=(bool(on_side[col]), float(on_side.mean())),
                quadrant=(bool(on_side[col] and on_level[row]),
                          float(on_side.mean() * on_level.mean())))


def save_attention_overlay(path: str | Path, image: Tensor | np.ndarray,
                           maps: Sequence[tuple[str, Tensor | np.ndarray]],
                           mask: Optional[np.ndarray] = None, title: str = "") -> Path:
    """Save a PNG: the image, then one panel per (word, (h, w) attention map) overlaid.

    Args:
        path: PNG to write (folder created).
        image: (H, W) or (1, H, W) image, any range (shown min-max scaled, grey).
        maps: (label, attention map) pairs, upsampled to the image size (bilinear).
        mask: optional (H, W) bool finding mask, drawn as a contour on every panel.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picture = np.asarray(image, dtype=np.float32).squeeze()
    height, width = picture.shape
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(2.6 * (len(maps) + 1), 2.9))
    axes = np.atleast_1d(axes)
    axes[0].imshow(picture, cmap="gray")
    axes[0].set_title("image")
    for ax, (label, attention) in zip(axes[1:], maps):
        heat = torch.as_tensor(np.asarray(attention), dtype=torch.float32)[None, None]
        heat = F.interpolate(heat, size=(height, width), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
        ax.imshow(picture, cmap="gray")
        ax.imshow(heat, cmap="jet", alpha=0.45)
        ax.set_title(f'"{label}"')
    for ax in axes:
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, dpi=110, format=path.suffix[1:] or "png")
    finally:
        plt.close(fig)
    return path
