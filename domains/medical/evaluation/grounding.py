"""Do a report's location words point at the finding? Token attention over a labelled set.

For every validation / test image of a generated MIMIC-CXR tree whose report names a
located finding ("right lower lobe opacity", "left pleural effusion"), take the word->patch
attention (:func:`~.token_attention.word_patch_attention`) of the side, zone and finding
words, and score it against the finding's drawn mask (``masks/<finding>/<dicom_id>.png``,
written by :func:`~interlace.domains.medical.data.make_synthetic_mimic`):

* the attention mass inside the mask, against uniform attention;
* the pointing game (:func:`~.token_attention.attention_peak_hits`): how often the peak
  lands on the mask, on the finding's side, in its quadrant, against a random peak.

Used by ``tools/analysis_tools/medical_grounding.py`` (a trained checkpoint) and
the medical check (``tools/check.py medical``, its ``grounding`` steps).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from torch import nn

from .token_attention import (attention_mass_in_mask, attention_peak_hits, finding_words,
                              save_attention_overlay, word_patch_attention)

__all__ = ["evaluate_grounding", "format_grounding"]

POINTING = ("point", "side", "quadrant")
logger = logging.getLogger(__name__)


def _mask(data_root: Path, finding: str, dicom_id: str, transform: Callable) -> np.ndarray:
    """The finding's mask in the transformed frame; raises ValueError naming the file if it
    is missing, unreadable or empty."""
    from ..data.synthetic import MASK_DIR

    path = data_root / MASK_DIR / finding / f"{dicom_id}.png"
    if not path.is_file():
        raise ValueError(f"{path}: no {finding} mask for image {dicom_id}")
    try:
        mask = transform(dict(img_path=str(path)))["img"][0].numpy() > 0
    except Exception as error:  # noqa: BLE001  any decoder failure: skip, named
        raise ValueError(f"{path}: unreadable mask ({error})") from error
    if not mask.any():
        raise ValueError(f"{path}: the {finding} mask is empty")
    return mask


def evaluate_grounding(model: nn.Module, data_root: str | Path, transform: Callable,
                       max_images: int = 150, png: Optional[str | Path] = None) -> dict:
    """Score the token attention of `model` on the generated set under `data_root`.

    Args:
        model: an MGCA with token-level heads (see :func:`word_patch_attention`).
        data_root: generated MIMIC-CXR-JPG tree with its ``masks/`` folder.
        transform: the eval image transform (applied to images and masks alike).
        max_images: stop after this many images whose report names a located finding
            (the validate split first, then test, in index order: runs compare alike).
        png: if given, ``<stem>_<finding><suffix>`` heat maps of the first image with each
            finding: its side, zone and finding words.

    Returns:
        ``dict(images=..., words={"<finding>:<role>": row}, skipped=[reasons], png=[paths])``;
        a row has ``n`` (mentions scored), ``mass``, ``chance``, ``ratio`` (mass / chance)
        and, per pointing hit (``point``, ``side``, ``quadrant``), ``<hit>_rate`` and
        ``<hit>_chance``. A finding whose mask is missing, unreadable or empty is skipped
        with a logged reason (in ``skipped``), not scored.
    """
    from ..data import MimicCxrDataset

    data_root = Path(data_root)
    dataset = MimicCxrDataset(str(data_root), split=["validate", "test"], unit="image",
                              pipeline=[transform])
    scores: dict[str, list[list[float]]] = {}
    examples: dict[str, tuple] = {}  # finding -> its first image with that finding
    skipped: list[str] = []
    images = 0
    for index in range(len(dataset)):
        if images >= max_images:
            break
        sample = dataset[index]
        attention = word_patch_attention(model, sample["img"], sample["report"])
        hits = finding_words(attention.words)
        if not hits:
            continue
        images += 1
        dicom_id = Path(sample["img_path"]).stem
        masks: dict[str, Optional[np.ndarray]] = {}
        for position, finding, role in hits:
            if finding not in masks:
                try:
                    masks[finding] = _mask(data_root, finding, dicom_id, transform)
                except ValueError as error:
                    masks[finding] = None
                    skipped.append(str(error))
                    logger.warning("grounding: skipped %s", error)
            if masks[finding] is None:
                continue
            mass, chance = attention_mass_in_mask(attention.attention[position], masks[finding])
            peak = attention_peak_hits(attention.attention[position], masks[finding])
            row = [mass, chance] + [value for key in POINTING for value in peak[key]]
            scores.setdefault(f"{finding}:{role}", []).append(row)
        for finding in (name for name, mask in masks.items() if mask is not None):
            examples.setdefault(finding, (sample, attention, hits, masks[finding]))
    words = {}
    for key, rows in sorted(scores.items()):
        table = np.asarray(rows, dtype=np.float64).mean(axis=0)
        row = dict(n=len(rows), mass=float(table[0]), chance=float(table[1]),
                   ratio=float(table[0] / max(table[1], 1e-9)))
        for i, name in enumerate(POINTING):
            row[f"{name}_rate"], row[f"{name}_chance"] = map(float, table[2 + 2 * i:4 + 2 * i])
        words[key] = row
    pngs = []
    if png is not None:
        png = Path(png)
        for finding, (sample, attention, hits, mask) in sorted(examples.items()):
            # The finding's first mention: side, zone (opacity) and the finding word.
            maps = [(attention.words[i], attention.attention[i]) for i, f, _ in hits
                    if f == finding][:3]
            path = png.with_name(f"{png.stem}_{finding}{png.suffix}")
            save_attention_overlay(path, sample["img"][0].numpy(), maps, mask,
                                   title=f"study {sample['study_id']}: word->patch "
                                         f"attention; white = {finding} mask")
            pngs.append(str(path))
    return dict(images=images, words=words, skipped=skipped, png=pngs)


def format_grounding(result: dict) -> list[str]:
    """Table lines for :func:`evaluate_grounding`'s result: mass ratio and pointing hits
    (per cent, chance in brackets) per finding word."""
    lines = [f"{'word':<18}{'n':>5}{'mass/chance':>13}"
             + "".join(f"{name + ' hit % (chance)':>24}" for name in POINTING)]
    for key, row in result["words"].items():
        cells = "".join(f"{row[f'{name}_rate'] * 100:>17.0f} ({row[f'{name}_chance'] * 100:4.1f})"
                        for name in POINTING)
        lines.append(f"{key:<18}{row['n']:>5}{row['ratio']:>12.1f}x{cells}")
    return lines
