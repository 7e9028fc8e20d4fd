"""MIMIC-CXR-JPG 2.0 and MIMIC-CXR (DICOM) as published by PhysioNet: an index of
image-report pairs and its dataset.

Layout read (``root`` is the folder holding ``files/`` and the CSVs)::

    files/p10/p10000032/s50414267/<dicom_id>.jpg      images (JPG release)
    files/p10/p10000032/s50414267/<dicom_id>.dcm      images (DICOM release)
    files/p10/p10000032/s50414267.txt                 report (``reports_root`` may differ)
    mimic-cxr-2.0.0-metadata.csv   dicom_id, subject_id, study_id, ViewPosition, ...
    mimic-cxr-2.0.0-split.csv      dicom_id, study_id, subject_id, split
    mimic-cxr-2.0.0-chexpert.csv   subject_id, study_id, 14 observations (also -negbio)

The tables come with MIMIC-CXR-JPG; the DICOM release is read with the same tables (copy
them next to its ``files/``). Each may be kept gzipped as downloaded (``*.csv.gz``).
``image_format='auto'`` picks ``.jpg`` or ``.dcm`` from the first image found; DICOM
files are shown as a radiologist sees them (:mod:`.dicom`), not histogram-equalised as
the JPG release is.

MGCA pre-trains on frontal views only with report text = impression + findings
(docs/methods/mgca.md). Rows that cannot be used are dropped, never fatal: each drop is counted
by reason in :attr:`MimicIndex.dropped`, and the first few are logged with their ids.
"""
from __future__ import annotations

import csv
import gzip
import logging
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from interlace.core.engine.registry import DATASETS

from .chexpert import (CHEXPERT_LABELS, LabelFileError, UncertaintyPolicy,
                       apply_uncertainty_policy, check_columns, parse_label_value)
from .index_cache import load_cache, save_cache
from .reports import ReportReadError, clean_report, read_report, report_text
from .transforms import ImageLoadError

__all__ = ["MimicRecord", "MimicIndex", "MimicCxrIndex", "MimicCxrDataset",
           "FRONTAL_VIEWS", "METADATA_CSV", "SPLIT_CSV", "LABEL_CSVS"]

logger = logging.getLogger(__name__)

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
LABEL_CSVS = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv",
              "negbio": "mimic-cxr-2.0.0-negbio.csv"}
FRONTAL_VIEWS = ("PA", "AP")
SPLITS = ("train", "validate", "test")
IMAGE_FORMATS = ("auto", "jpg", "dcm")
_LOGGED_PER_REASON = 5  # enough to find the files, not a flood over 377k rows


@dataclass
class MimicRecord:
    """One usable sample: an image (``unit='image'``) or a study (``unit='study'``)."""

    subject_id: int
    study_id: int
    split: str
    img_path: str                 # the image (for a study: its first frontal image)
    dicom_ids: list[str]          # every frontal image of the record
    view: str
    report: str                   # impression + findings (or last paragraph), raw case
    sentences: list[str]          # cleaned (clean_report)
    labels: list[float]           # 14 raw CheXpert values: 1 / 0 / -1 / NaN (not mentioned)


@dataclass
class MimicIndex:
    """Records plus what was dropped and why (reason -> count)."""

    records: list[MimicRecord]
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)  # kept, but worth knowing (no labels)

    def summary(self) -> str:
        drops = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        return f"{len(self.records)} records; dropped: {drops}"


def table_path(path: Path) -> Path:
    """`path`, or its gzipped download ``<path>.gz`` when only that exists."""
    zipped = path.with_name(path.name + ".gz")
    return zipped if not path.is_file() and zipped.is_file() else path


def _open_table(path: Path):
    path = table_path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


def _read_table(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    path = table_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MIMIC-CXR-JPG table not found (nor {path}.gz)")
    with _open_table(path) as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelFileError(f"{path}: missing columns {missing}; found {reader.fieldnames}")
        return list(reader)


class MimicCxrIndex:
    """Builds the list of image-report records from a MIMIC-CXR-JPG 2.0 tree.

    Args:
        root: folder with ``files/`` and the ``mimic-cxr-2.0.0-*.csv`` tables.
        reports_root: folder holding ``files/pXX/.../sXXXXXXXX.txt`` (default ``root``).
        unit: ``'image'`` (one record per frontal image) or ``'study'`` (one per study).
        views: ViewPosition values kept (frontal by default).
        label_source: ``'chexpert'`` or ``'negbio'`` label table.
        check_images: drop images whose file is missing (one ``stat`` per image).
        image_format: ``'jpg'`` (MIMIC-CXR-JPG), ``'dcm'`` (MIMIC-CXR's DICOM release)
            or ``'auto'``: the format of the first metadata row whose image exists.
        cache_path: JSON file for the prepared index; reused while the CSVs keep their
            size and mtime and the options above are unchanged. Report files are not
            tracked: delete the cache after editing reports.
    """

    def __init__(self, root: str | Path, reports_root: str | Path | None = None, *,
                 unit: Literal["image", "study"] = "image",
                 views: Sequence[str] = FRONTAL_VIEWS, label_source: str = "chexpert",
                 check_images: bool = True, cache_path: str | Path | None = None,
                 image_format: str = "auto") -> None:
        if unit not in ("image", "study"):
            raise ValueError(f"unit must be 'image' or 'study', not {unit!r}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {list(IMAGE_FORMATS)}, not "
                             f"{image_format!r}")
        if label_source not in LABEL_CSVS:
            raise ValueError(f"label_source must be one of {list(LABEL_CSVS)}")
        self.root = Path(root)
        self.reports_root = Path(reports_root) if reports_root else self.root
        self.unit, self.views, self.label_source = unit, tuple(views), label_source
        self.check_images = check_images
        self.cache_path = Path(cache_path) if cache_path else None
        self.loaded_from_cache = False
        self.image_format = image_format  # 'auto' becomes 'jpg' / 'dcm' in build()

    @property
    def sources(self) -> list[Path]:
        return [table_path(self.root / name) for name in
                (METADATA_CSV, SPLIT_CSV, LABEL_CSVS[self.label_source])]

    def _options(self) -> dict[str, Any]:
        return dict(root=str(self.root.resolve()), reports_root=str(self.reports_root.resolve()),
                    unit=self.unit, views=list(self.views), label_source=self.label_source,
                    check_images=self.check_images, image_format=self.image_format)

    def build(self) -> MimicIndex:
        """The index, from the cache when it is fresh."""
        if self.image_format == "auto":
            self.image_format = self._detect_image_format()
        if self.cache_path is not None:
            payload = load_cache(self.cache_path, self.sources, self._options())
            if payload is not None:
                self.loaded_from_cache = True
                return MimicIndex(records=[MimicRecord(**r) for r in payload["records"]],
                                  dropped=Counter(payload["dropped"]),
                                  notes=Counter(payload["notes"]))
        index = self._scan()
        logger.info("MIMIC-CXR index %s: %s", self.root, index.summary())
        if self.cache_path is not None:
            # Python's json writes NaN (not mentioned) as a bare token and reads it back.
            save_cache(self.cache_path, self.sources, self._options(), dict(
                records=[asdict(r) for r in index.records], dropped=dict(index.dropped),
                notes=dict(index.notes)))
        return index

    def report_path(self, subject_id: int, study_id: int) -> Path:
        return (self.reports_root / "files" / f"p{str(subject_id)[:2]}" / f"p{subject_id}"
                / f"s{study_id}.txt")

    def image_path(self, subject_id: int, study_id: int, dicom_id: str) -> Path:
        suffix = "jpg" if self.image_format == "auto" else self.image_format
        return (self.root / "files" / f"p{str(subject_id)[:2]}" / f"p{subject_id}"
                / f"s{study_id}" / f"{dicom_id}.{suffix}")

    def _detect_image_format(self, rows_tried: int = 50) -> str:
        """``'jpg'`` or ``'dcm'``: the suffix of the first existing image among the first
        `rows_tried` metadata rows (``'jpg'`` when none exists: they are then dropped as
        missing, with their ``.jpg`` paths in the log)."""
        path = table_path(self.root / METADATA_CSV)
        if not path.is_file():
            return "jpg"  # _scan raises the missing-table error
        with _open_table(path) as handle:
            for line, row in enumerate(csv.DictReader(handle)):
                if line >= rows_tried:
                    break
                try:
                    folder = self.image_path(int(row["subject_id"]), int(row["study_id"]),
                                             row["dicom_id"]).parent
                except (KeyError, TypeError, ValueError):
                    continue
                for suffix in ("jpg", "dcm"):
                    if (folder / f"{row['dicom_id']}.{suffix}").is_file():
                        return suffix
        return "jpg"

    def _read_labels(self) -> dict[int, list[float]]:
        path = table_path(self.root / LABEL_CSVS[self.label_source])
        with _open_table(path) as handle:
            reader = csv.DictReader(handle)
            check_columns(path, reader.fieldnames or [], ("subject_id", "study_id",
                          *CHEXPERT_LABELS), ("subject_id", "study_id", *CHEXPERT_LABELS),
                          allow_extra_columns=False)
            return {int(row["study_id"]): [parse_label_value(
                        row[name], where=f"{path}:{line} column {name!r}")
                        for name in CHEXPERT_LABELS]
                    for line, row in enumerate(reader, start=2)}

    def _scan(self) -> MimicIndex:
        dropped, notes = Counter(), Counter()
        examples: dict[str, int] = defaultdict(int)

        def drop(reason: str, what: str, count: int = 1) -> None:
            dropped[reason] += count
            examples[reason] += 1
            if examples[reason] <= _LOGGED_PER_REASON:
                logger.warning("MIMIC-CXR: dropped %s (%s)", what, reason.replace("_", " "))

        metadata = _read_table(self.root / METADATA_CSV,
                               ("dicom_id", "subject_id", "study_id", "ViewPosition"))
        splits = {row["dicom_id"]: row["split"] for row in
                  _read_table(self.root / SPLIT_CSV, ("dicom_id", "split"))}
        labels = self._read_labels()
        studies: dict[tuple[int, int], list[dict[str, str]]] = defaultdict(list)
        for line, row in enumerate(metadata, start=2):
            try:
                studies[(int(row["subject_id"]), int(row["study_id"]))].append(row)
            except (TypeError, ValueError):
                drop("bad_metadata_row", f"{self.root / METADATA_CSV}:{line} (subject_id "
                     f"{row['subject_id']!r}, study_id {row['study_id']!r} not integers)")

        records: list[MimicRecord] = []
        for (subject_id, study_id), rows in studies.items():
            frontal = [r for r in rows if (r["ViewPosition"] or "").strip() in self.views]
            if len(frontal) < len(rows):
                dropped["lateral_view"] += len(rows) - len(frontal)  # expected, not logged
            if not frontal:
                drop("lateral_only_study", f"study s{study_id}")
                continue
            report_file = self.report_path(subject_id, study_id)
            try:
                raw_report = read_report(report_file)
            except FileNotFoundError:
                drop("missing_report", str(report_file))
                continue
            except ReportReadError as error:
                drop("unreadable_report", str(error))
                continue
            sentences = clean_report(raw_report)
            if not sentences:
                drop("empty_report", f"{report_file} (no findings/impression text)")
                continue
            kept = []
            for row in frontal:
                path = self.image_path(subject_id, study_id, row["dicom_id"])
                split = splits.get(row["dicom_id"])
                if split not in SPLITS:
                    drop("no_split", f"image {row['dicom_id']} (split {split!r})")
                elif self.check_images and not path.is_file():
                    drop("missing_image", str(path))
                else:
                    kept.append((row, path, split))
            if not kept:
                continue
            study_labels = labels.get(study_id)
            if study_labels is None:
                notes["no_labels"] += 1
                study_labels = [math.nan] * len(CHEXPERT_LABELS)
            common = dict(subject_id=subject_id, study_id=study_id,
                          report=report_text(raw_report), sentences=sentences,
                          labels=list(study_labels))
            if self.unit == "study":
                # PA before AP: PA is the standard erect view with less magnification.
                kept.sort(key=lambda item: self.views.index(item[0]["ViewPosition"].strip()))
                row, path, split = kept[0]
                records.append(MimicRecord(split=split, img_path=str(path),
                                           dicom_ids=[k[0]["dicom_id"] for k in kept],
                                           view=row["ViewPosition"].strip(), **common))
            else:
                records += [MimicRecord(split=split, img_path=str(path),
                                        dicom_ids=[row["dicom_id"]],
                                        view=row["ViewPosition"].strip(), **common)
                            for row, path, split in kept]
        return MimicIndex(records=records, dropped=dropped, notes=notes)


@DATASETS.register_module()
class MimicCxrDataset(BaseDataset):
    """MIMIC-CXR(-JPG) image-report pairs for MGCA-style pre-training and label probes.

    ``image_format`` (``'auto'``, ``'jpg'``, ``'dcm'``) chooses the JPG or the DICOM
    release (see :class:`MimicCxrIndex`); a DICOM tree needs no other setting, since
    ``LoadCxrImaged`` reads both onto the same 0..255 scale.

    Each sample (before the pipeline) is ``dict(img_path, report, sentences, labels,
    label_mask, study_id, subject_id, dicom_ids, view, split)``; ``labels`` is a
    float32 (14,) array after ``uncertainty`` (see :mod:`.chexpert`), in the order of
    ``metainfo['classes']``.

    Images that fail to load (truncated JPEG) are skipped during training with a logged
    reason and counted in :attr:`skipped`; mmengine then fetches another sample. In
    ``test_mode`` the error propagates, since skipping would change what is scored.
    """

    METAINFO = dict(classes=CHEXPERT_LABELS)

    def __init__(self, data_root: str, split: str | Sequence[str] | None = "train", *,
                 reports_root: str | None = None, unit: Literal["image", "study"] = "image",
                 views: Sequence[str] = FRONTAL_VIEWS, label_source: str = "chexpert",
                 uncertainty: UncertaintyPolicy = "ones", check_images: bool = True,
                 cache_path: str | None = None, image_format: str = "auto",
                 pipeline: Sequence[dict | Callable] = (), **kwargs: Any) -> None:
        wanted = [split] if isinstance(split, str) else list(split or SPLITS)
        unknown = [s for s in wanted if s not in SPLITS]
        if unknown:
            raise ValueError(f"unknown MIMIC-CXR split(s) {unknown}; use {list(SPLITS)}")
        self.splits, self.uncertainty = wanted, uncertainty
        self.index_builder = MimicCxrIndex(
            data_root, reports_root, unit=unit, views=views, label_source=label_source,
            check_images=check_images, cache_path=cache_path, image_format=image_format)
        self.index: MimicIndex | None = None
        self.skipped: Counter = Counter()
        super().__init__(data_root=data_root, pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> list[dict]:
        self.index = self.index_builder.build()
        data_list = []
        for record in self.index.records:
            if record.split not in self.splits:
                continue
            raw = np.array([math.nan if v is None else v for v in record.labels], np.float32)
            labels, mask = apply_uncertainty_policy(raw, self.uncertainty)
            data_list.append(dict(
                img_path=record.img_path, report=record.report, sentences=record.sentences,
                labels=labels, label_mask=mask, study_id=record.study_id,
                subject_id=record.subject_id, dicom_ids=record.dicom_ids, view=record.view,
                split=record.split))
        return data_list

    def prepare_data(self, idx: int) -> Any:
        try:
            return super().prepare_data(idx)
        except ImageLoadError as error:
            if self.test_mode:
                raise
            self.skipped["unreadable_image"] += 1
            logger.warning("MimicCxrDataset: skipped sample %d: %s", idx, error)
            return None
