"""Writing probe outputs: one CSV row per study with the predicted probabilities."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from interlace.core.engine.atomic_files import atomic_write

__all__ = ["write_probabilities_csv"]


def write_probabilities_csv(path: str | os.PathLike, study_ids: Sequence,
                            probabilities: np.ndarray, label_names: Sequence[str]) -> Path:
    """Write ``study_id,<label 1>,...,<label K>`` with one row per study, atomically.

    The file is written with :func:`~interlace.core.engine.atomic_files.atomic_write`, so
    a reader never sees a half-written file and an interrupted write leaves the previous
    file (and no temporary file) behind.

    Args:
        path: the CSV to write; its folder is created.
        study_ids: N study ids (one per row, in order).
        probabilities: (N, K) array; NaN (a label that was not evaluated) is written as an
            empty cell. Values are written with ``repr`` precision, so reading them back
            with ``float`` gives the same numbers.
        label_names: K column names.

    Returns:
        The path written.
    """
    path = Path(path)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {probabilities.shape}")
    if probabilities.shape != (len(study_ids), len(label_names)):
        raise ValueError(f"probabilities shape {probabilities.shape} does not match "
                         f"{len(study_ids)} studies x {len(label_names)} labels")
    with atomic_write(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["study_id", *label_names])
        for study_id, row in zip(study_ids, probabilities):
            writer.writerow([study_id, *("" if math.isnan(v) else repr(float(v)) for v in row)])
    return path
