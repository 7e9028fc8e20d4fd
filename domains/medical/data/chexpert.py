"""CheXpert label CSVs: the 14 observation names and the uncertainty policies.

The CheXpert ``train.csv`` / ``valid.csv`` hold ``Path, Sex, Age, Frontal/Lateral,
AP/PA`` then one column per observation with 1.0 (positive), 0.0 (negative), -1.0
(uncertain) or empty (not mentioned). The MIMIC-CXR ``chexpert`` / ``negbio`` label
files use the same 14 columns after ``subject_id, study_id``.

Uncertain labels follow the policies of the CheXpert paper (Irvin et al., 2019, §4):
``ones`` (U-Ones), ``zeros`` (U-Zeros) or ``ignore`` (U-Ignore, masked out of the
loss). Not mentioned counts as negative, as in that paper's training code.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

__all__ = ["CHEXPERT_LABELS", "CHEXPERT_META_COLUMNS", "UncertaintyPolicy",
           "apply_uncertainty_policy", "parse_label_value", "ChexpertRecord",
           "read_chexpert_csv", "check_columns", "LabelFileError"]

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
    "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity",
    "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax",
    "Support Devices",
)
CHEXPERT_META_COLUMNS: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")

UncertaintyPolicy = Literal["ones", "zeros", "ignore"]
_POLICIES = ("ones", "zeros", "ignore")


class LabelFileError(ValueError):
    """A label CSV that cannot be read as published; the message names the file."""


def parse_label_value(value: str | None, *, where: str = "") -> float:
    """A label cell as float: 1.0, 0.0, -1.0, or NaN for empty (not mentioned)."""
    text = (value or "").strip()
    if not text:
        return math.nan
    try:
        number = float(text)
    except ValueError:
        raise LabelFileError(f"{where}: label value {value!r} is not a number") from None
    if number not in (1.0, 0.0, -1.0):
        raise LabelFileError(f"{where}: label value {value!r} is not one of 1, 0, -1 or empty")
    return number


def apply_uncertainty_policy(raw: np.ndarray, policy: UncertaintyPolicy
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Map raw labels (1 / 0 / -1 / NaN) to training targets and a validity mask.

    Returns ``(labels, mask)`` as float32 arrays of ``raw``'s shape. Not mentioned
    (NaN) becomes 0 with mask 1. Uncertain (-1) becomes 1 (``ones``), 0 (``zeros``) or
    NaN with mask 0 (``ignore``), so a loss can multiply by the mask.
    """
    if policy not in _POLICIES:
        raise ValueError(f"uncertainty policy {policy!r} is not one of {_POLICIES}")
    raw = np.asarray(raw, dtype=np.float32)
    labels = np.where(np.isnan(raw), 0.0, raw).astype(np.float32)
    mask = np.ones_like(labels)
    uncertain = raw == -1.0
    if policy == "ones":
        labels[uncertain] = 1.0
    elif policy == "zeros":
        labels[uncertain] = 0.0
    else:
        labels[uncertain] = np.nan
        mask[uncertain] = 0.0
    return labels, mask


@dataclass
class ChexpertRecord:
    """One row of a CheXpert CSV after the uncertainty policy."""

    path: str
    sex: str
    age: float
    view: str            # Frontal / Lateral
    projection: str      # AP / PA / empty for laterals
    labels: np.ndarray   # (n_labels,) float32, NaN where ignored
    mask: np.ndarray     # (n_labels,) float32, 0 where ignored
    raw: np.ndarray = field(repr=False)  # (n_labels,) as written: 1 / 0 / -1 / NaN


def check_columns(path: Path, header: Sequence[str], required: Iterable[str],
                  allowed: Iterable[str], allow_extra_columns: bool) -> None:
    """Raise :class:`LabelFileError` naming `path` for missing or unknown columns."""
    missing = [c for c in required if c not in header]
    if missing:
        raise LabelFileError(f"{path}: missing columns {missing}; found {list(header)}")
    known = set(allowed)
    unknown = [c for c in header if c not in known]
    if unknown and not allow_extra_columns:
        raise LabelFileError(
            f"{path}: unknown columns {unknown} (expected {list(allowed)}); pass "
            "allow_extra_columns=True to ignore them")


def read_chexpert_csv(path: str | Path, policy: UncertaintyPolicy = "ones", *,
                      labels: Sequence[str] = CHEXPERT_LABELS,
                      allow_extra_columns: bool = False) -> list[ChexpertRecord]:
    """Read a CheXpert ``train.csv`` / ``valid.csv``.

    Args:
        path: the CSV.
        policy: what uncertain (-1) labels become (module docstring).
        labels: which observations to return, in this order (e.g. the 5 competition
            labels); every one must be a column of the file.
        allow_extra_columns: accept columns that are neither metadata nor one of the 14
            observations instead of raising.
    """
    path = Path(path)
    if policy not in _POLICIES:
        raise ValueError(f"uncertainty policy {policy!r} is not one of {_POLICIES}")
    unknown_labels = [name for name in labels if name not in CHEXPERT_LABELS]
    if unknown_labels:
        raise ValueError(f"not CheXpert observations: {unknown_labels}")
    records: list[ChexpertRecord] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        check_columns(path, header, required=("Path", *labels),
                      allowed=(*CHEXPERT_META_COLUMNS, *CHEXPERT_LABELS),
                      allow_extra_columns=allow_extra_columns)
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            raw = np.array([parse_label_value(row[name], where=f"{where} column {name!r}")
                            for name in labels], dtype=np.float32)
            target, mask = apply_uncertainty_policy(raw, policy)
            age = (row.get("Age") or "").strip()
            records.append(ChexpertRecord(
                path=row["Path"], sex=row.get("Sex") or "", age=float(age) if age else math.nan,
                view=row.get("Frontal/Lateral") or "", projection=row.get("AP/PA") or "",
                labels=target, mask=mask, raw=raw))
    return records
