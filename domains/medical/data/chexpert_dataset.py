"""A CheXpert-style folder: a label CSV naming each image (JPG, PNG or DICOM) by path.

The CheXpert layout, and any set written the same way (an RSNA or hospital export as
DICOMs with a ``Path`` column and one column per observation)::

    CheXpert-v1.0/train.csv                 Path, Sex, Age, Frontal/Lateral, AP/PA, labels
    CheXpert-v1.0/valid.csv
    CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg   (or .dcm)

``Path`` is relative to ``data_root``; CheXpert's own paths start with the folder name
(``CheXpert-v1.0/train/...``), so a path whose first part is ``data_root``'s name is read
from ``data_root``'s parent. Labels are parsed by :func:`.chexpert.read_chexpert_csv`
(1 / 0 / -1 / empty, uncertainty policies). Samples carry what the linear probe reads
(:func:`interlace.domains.medical.evaluation.extract_features`): ``img``, ``labels``,
``label_mask`` and ``study_id``.
"""
from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from mmengine.dataset import BaseDataset

from interlace.core.engine.registry import DATASETS

from .chexpert import (CHEXPERT_LABELS, LabelFileError, UncertaintyPolicy,
                       read_chexpert_csv)
from .image_errors import ImageLoadError

__all__ = ["ChexpertDataset", "SPLIT_FILES"]

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.csv", "validate": "valid.csv", "test": "test.csv"}
_LOGGED = 5


@DATASETS.register_module()
class ChexpertDataset(BaseDataset):
    """Images listed in a CheXpert-style label CSV, with their labels.

    Args:
        data_root: the folder holding the CSVs (see the module docstring for ``Path``).
        split: ``'train'`` (``train.csv``), ``'validate'`` (``valid.csv``) or ``'test'``
            (``test.csv``); ignored when ``ann_file`` is given.
        ann_file: the label CSV, relative to ``data_root`` or absolute.
        labels: observations returned, in this order; default: every CheXpert
            observation that is a column of the CSV.
        uncertainty: what -1 becomes (``'ones'``, ``'zeros'``, ``'ignore'``).
        frontal_only: drop rows whose ``Frontal/Lateral`` is ``Lateral`` (MGCA probes
            frontal views); files without the column keep every row.
        check_images: drop rows whose image is missing (counted in :attr:`dropped`, the
            first few logged with their path).

    Each sample (before the pipeline) is ``dict(img_path, labels (K,) float32,
    label_mask (K,) float32, study_id (the CSV's Path), view, projection, sex, age)``.
    Unreadable images are skipped in training (counted in :attr:`skipped`) and raise in
    ``test_mode``, as in :class:`.mimic.MimicCxrDataset`.
    """

    def __init__(self, data_root: str, split: str = "train", *, ann_file: str | None = None,
                 labels: Sequence[str] | None = None, uncertainty: UncertaintyPolicy = "ones",
                 frontal_only: bool = True, check_images: bool = True,
                 pipeline: Sequence[dict | Callable] = (), **kwargs: Any) -> None:
        if ann_file is None:
            if split not in SPLIT_FILES:
                raise ValueError(f"unknown split {split!r}; use {list(SPLIT_FILES)} or "
                                 "give ann_file")
            ann_file = SPLIT_FILES[split]
        csv_path = Path(ann_file) if Path(ann_file).is_absolute() else Path(data_root) / ann_file
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path}: label CSV not found")
        self.labels = tuple(labels) if labels is not None else _label_columns(csv_path)
        self.uncertainty, self.frontal_only = uncertainty, frontal_only
        self.check_images = check_images
        self.dropped: Counter = Counter()
        self.skipped: Counter = Counter()
        metainfo = dict(classes=self.labels, **(kwargs.pop("metainfo", None) or {}))
        super().__init__(ann_file=str(csv_path.resolve()), data_root=data_root, metainfo=metainfo,
                         pipeline=list(pipeline), **kwargs)

    def image_path(self, relative: str) -> Path:
        """Where a CSV ``Path`` points (module docstring)."""
        root = Path(self.data_root)
        path = Path(relative)
        if path.is_absolute():
            return path
        if path.parts and path.parts[0] == root.name:
            return root.parent / path
        return root / path

    def load_data_list(self) -> list[dict]:
        records = read_chexpert_csv(self.ann_file, self.uncertainty, labels=self.labels,
                                    allow_extra_columns=True)
        data_list = []
        for record in records:
            if self.frontal_only and record.view.strip().lower() == "lateral":
                self.dropped["lateral_view"] += 1
                continue
            path = self.image_path(record.path)
            if self.check_images and not path.is_file():
                self.dropped["missing_image"] += 1
                if self.dropped["missing_image"] <= _LOGGED:
                    logger.warning("ChexpertDataset: dropped %s (missing image, listed in %s)",
                                   path, self.ann_file)
                continue
            data_list.append(dict(img_path=str(path), labels=record.labels,
                                  label_mask=record.mask, study_id=record.path,
                                  view=record.view, projection=record.projection,
                                  sex=record.sex, age=record.age))
        logger.info("ChexpertDataset %s: %d images; dropped %s", self.ann_file,
                    len(data_list), dict(self.dropped) or "none")
        return data_list

    def prepare_data(self, idx: int) -> Any:
        try:
            return super().prepare_data(idx)
        except ImageLoadError as error:
            if self.test_mode:
                raise
            self.skipped["unreadable_image"] += 1
            logger.warning("ChexpertDataset: skipped sample %d: %s", idx, error)
            return None


def _label_columns(csv_path: Path) -> tuple[str, ...]:
    with csv_path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    labels = tuple(name for name in CHEXPERT_LABELS if name in header)
    if "Path" not in header or not labels:
        raise LabelFileError(f"{csv_path}: a CheXpert-style CSV needs a 'Path' column and at "
                             f"least one of {list(CHEXPERT_LABELS)}; found {header}")
    return labels
