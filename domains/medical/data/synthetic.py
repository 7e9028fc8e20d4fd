"""A small synthetic MIMIC-CXR-JPG 2.0 set whose labels match what is drawn.

Writes the published layout (``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg``, the
report next to the study folder as ``sXXXXXXXX.txt``, and the four
``mimic-cxr-2.0.0-*.csv`` tables) so the real readers run on it unchanged. Each frontal
image is a rough radiograph drawn with numpy (dark lungs, bright mediastinum, ribs,
diaphragm) plus the study's findings at their place, and the report names them with
location words; the CheXpert / NegBio tables agree with both. ``synthetic_truth.json``
records the drawn findings per study for tests and demos.

Image orientation follows radiology: the patient's right lung is on the viewer's left.
``image_format='dcm'`` writes the MIMIC-CXR DICOM release's layout instead
(``<dicom_id>.dcm``, the same tables): MONOCHROME1 12-bit DX files, JPEG 2000 lossless
(:mod:`.synthetic_dicom`).
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from interlace.core.engine.atomic_files import atomic_write

from .chexpert import CHEXPERT_LABELS
from .synthetic_dicom import DicomCompression, write_radiograph_dicom

__all__ = ["StudyTruth", "make_synthetic_mimic", "METADATA_CSV", "SPLIT_CSV",
           "CHEXPERT_CSV", "NEGBIO_CSV", "TRUTH_JSON"]

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv"
NEGBIO_CSV = "mimic-cxr-2.0.0-negbio.csv"
TRUTH_JSON = "synthetic_truth.json"
# Segmentation ground truth of the generated set (not part of MIMIC-CXR-JPG): one binary
# PNG (0 / 255) per frontal image and finding at `masks/<finding>/<dicom_id>.png`, the
# image's size; "heart" is the cardiac silhouette, present in every image.
MASK_DIR = "masks"
MASK_FINDINGS = ("opacity", "effusion", "heart", "device")

_METADATA_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                     "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime",
                     "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                     "PatientOrientationCodeSequence_CodeMeaning"]
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral",
                 "LL": "left lateral"}


@dataclass
class StudyTruth:
    """What was drawn for one study (and what its labels must say)."""

    subject_id: int
    study_id: int
    split: str
    opacity: tuple[str, str] | None = None      # (side, zone): ("right", "lower")
    opacity_uncertain: bool = False
    effusion: str | None = None                 # side
    cardiomegaly: bool = False
    support_device: bool = False
    frontal: list[str] = field(default_factory=list)   # dicom ids
    lateral: list[str] = field(default_factory=list)
    bad_case: str = ""                          # why the study is deliberately broken

    def labels(self) -> dict[str, str]:
        """CheXpert-table cells for the 14 observations ("1.0", "0.0", "-1.0", "")."""
        cells = {name: "" for name in CHEXPERT_LABELS}
        if self.opacity:
            cells["Lung Opacity"] = "-1.0" if self.opacity_uncertain else "1.0"
        if self.effusion:
            cells["Pleural Effusion"] = "1.0"
        else:
            cells["Pleural Effusion"] = "0.0"   # the report says "no pleural effusion"
        cells["Pneumothorax"] = "0.0"           # ... "or pneumothorax"
        if self.cardiomegaly:
            cells["Cardiomegaly"] = "1.0"
        if self.support_device:
            cells["Support Devices"] = "1.0"
        if not (self.opacity or self.effusion or self.cardiomegaly or self.support_device):
            cells["No Finding"] = "1.0"
        return cells


@dataclass(frozen=True)
class _Anatomy:
    """One patient's chest geometry, in the frame of :func:`_draw_frontal` (x: -1 viewer's
    left .. 1, y: 0 top .. 1 bottom). Drawn once per patient, so follow-up studies of a
    patient share it and only positioning, exposure and findings change."""

    lung_cx: float          # lung centres at -lung_cx (patient's right) and +lung_cx
    lung_rx: float
    lung_cy: float
    lung_ry: float
    normal_heart_rx: float  # heart half-width when not enlarged
    heart_ry: float
    rib_frequency: float
    rib_phase: float


def _patient_anatomy(subject_id: int) -> _Anatomy:
    rng = np.random.default_rng(subject_id)  # the same patient always looks the same
    return _Anatomy(lung_cx=rng.uniform(0.38, 0.46), lung_rx=rng.uniform(0.26, 0.32),
                    lung_cy=rng.uniform(0.42, 0.48), lung_ry=rng.uniform(0.31, 0.36),
                    normal_heart_rx=rng.uniform(0.21, 0.28), heart_ry=rng.uniform(0.14, 0.18),
                    rib_frequency=rng.uniform(48.0, 62.0), rib_phase=rng.uniform(0, 2 * np.pi))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(height, width) float32 noise of unit scale that varies over about `cells` cells."""
    grid = rng.normal(size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height),
                                                             Image.Resampling.BICUBIC))


def _draw_frontal(rng: np.random.Generator, truth: StudyTruth, height: int,
                  width: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A (height, width) uint8 frontal radiograph with the study's findings, and a
    (height, width) bool mask per entry of `MASK_FINDINGS` (empty when absent).

    Findings are deliberately subtle and variable (contrast of a few noise levels, random
    position inside their lobe / side, size, shape and orientation), on top of per-patient
    anatomy, per-image positioning (shift, small rotation), exposure (gain, offset),
    low-frequency structure and pixel noise: a random network's pooled features should not
    separate them, a model that learnt where to look should.
    """
    anatomy = _patient_anatomy(truth.subject_id)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    # Positioning: rotate about the image centre by a few degrees and shift a little.
    angle, dx, dy = rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)
    u, v = (cols / width) * 2.0 - 1.0, (rows / height) * 2.0 - 1.0
    x = np.cos(angle) * u - np.sin(angle) * v - dx           # -1 viewer's left .. 1
    y = (np.sin(angle) * u + np.cos(angle) * v) * 0.5 + 0.5 - dy   # 0 top .. 1 bottom
    image = np.full((height, width), rng.uniform(5.0, 20.0), np.float32)
    body = (x / rng.uniform(0.86, 0.97)) ** 2 + ((y - 0.55) / 0.6) ** 2 < 1.0
    image[body] = rng.uniform(90.0, 120.0)
    a = anatomy
    centres = {"right": -a.lung_cx, "left": a.lung_cx}
    lungs = np.zeros_like(body)
    for cx in centres.values():
        lungs |= ((x - cx) / a.lung_rx) ** 2 + ((y - a.lung_cy) / a.lung_ry) ** 2 < 1.0
    lung_level = rng.uniform(30.0, 50.0)
    image[lungs] = lung_level
    ribs = lungs & (np.sin(y * a.rib_frequency + np.abs(x) * 7.0 + a.rib_phase) > 0.75)
    image[ribs] += rng.uniform(15.0, 30.0)
    mediastinum_level = rng.uniform(170.0, 205.0)
    image[(np.abs(x) < rng.uniform(0.09, 0.12)) & body] = mediastinum_level  # spine
    # Cardiothoracic ratio about 0.3-0.4 when normal, > 0.5 when enlarged (a gap between).
    heart_rx = rng.uniform(0.37, 0.44) if truth.cardiomegaly else a.normal_heart_rx
    heart_cy = a.lung_cy + 0.6 * a.lung_ry
    heart = ((x - 0.08) / heart_rx) ** 2 + ((y - heart_cy) / a.heart_ry) ** 2 < 1.0
    image[heart] = rng.uniform(150.0, 185.0)
    masks = {name: np.zeros((height, width), bool) for name in MASK_FINDINGS}
    masks["heart"] = heart.copy()
    diaphragm = a.lung_cy + a.lung_ry + 0.03 + 0.05 * np.abs(x)
    image[body & (y > diaphragm)] = rng.uniform(130.0, 165.0)       # diaphragm / abdomen
    if truth.opacity:
        side, zone = truth.opacity
        # Anywhere in the named zone of the named lung, any size, shape and orientation.
        cy = a.lung_cy + a.lung_ry * (rng.uniform(-0.55, -0.3) if zone == "upper"
                                      else rng.uniform(0.2, 0.45))
        cx = centres[side] + a.lung_rx * rng.uniform(-0.3, 0.3)
        theta = rng.uniform(0.0, np.pi)
        along = np.cos(theta) * (x - cx) + np.sin(theta) * (y - cy)
        across = -np.sin(theta) * (x - cx) + np.cos(theta) * (y - cy)
        envelope = np.exp(-((along / rng.uniform(0.09, 0.15)) ** 2
                            + (across / rng.uniform(0.07, 0.11)) ** 2))
        texture = 0.8 + 0.2 * np.clip(_smooth_noise(rng, height, width, 12), -1.0, 1.0)
        strength = (rng.uniform(30.0, 45.0) if truth.opacity_uncertain
                    else rng.uniform(70.0, 100.0))
        image += strength * envelope * texture * lungs
        masks["opacity"] = (envelope > 0.5) & lungs
    if truth.effusion:
        cx = centres[truth.effusion]
        # Meniscus: fluid fills the base and climbs the lateral chest wall.
        lateral = np.clip((np.abs(x) - abs(cx) + 0.3) / 0.6, 0.0, 1.0)
        level = (a.lung_cy + a.lung_ry * rng.uniform(0.45, 0.7)
                 - rng.uniform(0.08, 0.14) * lateral ** 2)
        fluid = lungs & ~heart & (np.sign(x) == np.sign(cx)) & (y > level)
        depth = np.clip((y - level) / 0.1, 0.0, 1.0)  # denser towards the base
        image[fluid] = (lung_level + rng.uniform(50.0, 90.0) * (0.7 + 0.3 * depth))[fluid]
        masks["effusion"] = fluid
    if truth.support_device:  # endotracheal tube down the trachea, then its tip
        # An adult tube is about 1 cm across on a 35-43 cm film: 2-3 % of the width (x
        # spans 2), so it stays 2-3 px wide when a model downsamples to 96 px.
        half_width = rng.uniform(0.02, 0.03)
        tube = ((np.abs(x - rng.uniform(-0.01, 0.04)) < half_width) & (y > 0.02)
                & (y < rng.uniform(0.28, 0.36)))
        image[tube] = mediastinum_level + rng.uniform(25.0, 45.0)
        masks["device"] = tube
    image += rng.uniform(4.0, 12.0) * _smooth_noise(rng, height, width, 6)  # soft tissue
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-15.0, 15.0)        # exposure
    image += rng.normal(0.0, rng.uniform(3.0, 8.0), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), masks


def _draw_lateral(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    image = np.full((height, width), 12.0, np.float32)
    image[((x - 0.5) / 0.4) ** 2 + ((y - 0.55) / 0.55) ** 2 < 1.0] = 110.0
    image[((x - 0.5) / 0.25) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1.0] = 45.0
    image[(x > 0.78) & (x < 0.86)] += 70.0                        # spine, seen side-on
    image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _sentences(truth: StudyTruth) -> tuple[list[str], list[str]]:
    """(findings sentences, impression items) describing the drawn findings."""
    findings, impression = [], []
    if truth.support_device:
        findings.append("An endotracheal tube is in place, terminating 4 cm above the carina.")
        impression.append("Endotracheal tube in place.")
    if truth.opacity:
        side, zone = truth.opacity
        where = f"{side} {zone} lobe"
        if truth.opacity_uncertain:
            findings.append(f"Subtle {where} opacity, atelectasis versus early consolidation.")
            impression.append(f"Possible {where} opacity.")
        else:
            findings.append(f"There is a focal {where} opacity.")
            impression.append(f"{where.capitalize()} opacity.")
    if truth.effusion:
        findings.append(f"Small {truth.effusion} pleural effusion with blunting of the "
                        "costophrenic angle.")
        impression.append(f"Small {truth.effusion} pleural effusion.")
        findings.append("No pneumothorax.")
    else:
        findings.append("No pleural effusion or pneumothorax.")
    if truth.cardiomegaly:
        findings.append("The heart is enlarged.")
        impression.append("Cardiomegaly; the heart is enlarged.")
    else:
        findings.append("The cardiomediastinal silhouette is within normal limits.")
    if len(impression) == 0:
        impression.append("No acute cardiopulmonary process.")
    return findings, impression


def _report(rng: np.random.Generator, truth: StudyTruth, view: str) -> str:
    findings, impression = _sentences(truth)
    style = rng.random()
    if len(impression) > 1 and rng.random() < 0.5:  # numbered impressions, as radiologists do
        impression_text = "\n ".join(f"{i}. {s}" for i, s in enumerate(impression, 1))
    else:
        impression_text = " ".join(impression)
    lines = ["                                 FINAL REPORT",
             f" EXAMINATION:  CHEST ({view} AND LAT)", "",
             " INDICATION:  ___-year-old with shortness of breath.  // eval for pneumonia", "",
             f" TECHNIQUE:  Chest {view} and lateral radiographs.", "",
             " COMPARISON:  None.", ""]
    if style < 0.1:                 # FINDINGS header with nothing under it
        lines += [" FINDINGS: ", "", ""]
    elif style < 0.2:               # only IMPRESSION
        pass
    else:
        lines += [" FINDINGS: ", "", " " + "  ".join(findings), ""]
    lines += [" IMPRESSION: ", "", " " + impression_text, ""]
    return "\n".join(lines)


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(v):08x}" for v in rng.integers(0, 2**32, size=5))


def _study_dir(root: Path, subject_id: int, study_id: int) -> Path:
    return root / "files" / f"p{str(subject_id)[:2]}" / f"p{subject_id}" / f"s{study_id}"


def _save_jpeg(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=90)


def _save_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path, format="PNG")


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with atomic_write(path, "w", newline="", fsync=False) as handle:  # never a half table
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def make_synthetic_mimic(out: str | Path, studies: int = 100, seed: int = 0, *,
                         with_bad_cases: bool = False, lateral_fraction: float = 0.25,
                         min_size: int = 256, max_size: int = 512,
                         image_format: str = "jpg",
                         dicom_compression: DicomCompression = "jpeg2000") -> dict[str, Any]:
    """Write a synthetic MIMIC-CXR-JPG 2.0 tree under `out`; deterministic given `seed`.

    ``image_format='dcm'`` writes the same studies as DICOM files (the MIMIC-CXR DICOM
    layout) with ``dicom_compression``; the pictures, ids, reports and tables are those
    of the JPG tree of the same seed.

    Every study has one frontal image (PA, or AP when intubated); about
    ``lateral_fraction`` of them also get a lateral (LATERAL / LL), i.e. ~20 % of all
    images. ``with_bad_cases`` adds five broken studies, one per problem the readers must
    survive: empty report, lateral view only, truncated JPEG, missing report file,
    missing image file. Returns a summary with the counts and ``truth`` (per study).
    """
    if image_format not in ("jpg", "dcm"):
        raise ValueError(f"image_format must be 'jpg' or 'dcm', not {image_format!r}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    metadata, split_rows, label_rows, truths = [], [], [], []
    subject_id, subject_split = 10_000_000 + int(rng.integers(0, 1000)), "train"
    bad_kinds = (["empty_report", "lateral_only", "truncated_jpeg", "missing_report",
                  "missing_image"] if with_bad_cases else [])
    for index in range(studies + len(bad_kinds)):
        if index == 0 or rng.random() < 0.6:  # a new patient; the split goes by patient
            subject_id += int(rng.integers(1, 5000))
            subject_split = str(rng.choice(["train", "validate", "test"], p=[0.8, 0.1, 0.1]))
        truth = StudyTruth(subject_id=subject_id, study_id=50_000_000 + index * 37 + 11,
                           split=subject_split)
        if index >= studies:
            truth.bad_case = bad_kinds[index - studies]
        else:
            if rng.random() < 0.3:
                truth.opacity = (str(rng.choice(["right", "left"])),
                                 str(rng.choice(["upper", "lower"])))
                truth.opacity_uncertain = bool(rng.random() < 0.15)
            if rng.random() < 0.25:
                truth.effusion = str(rng.choice(["right", "left"]))
            truth.cardiomegaly = bool(rng.random() < 0.25)
            truth.support_device = bool(rng.random() < 0.2)
        study_dir = _study_dir(out, truth.subject_id, truth.study_id)
        view = "AP" if truth.support_device else "PA"
        height = int(rng.integers(min_size, max_size + 1))
        width = int(np.clip(height * rng.uniform(0.8, 1.2), min_size, max_size))
        date = 21000101 + int(rng.integers(0, 80)) * 10000 + int(rng.integers(0, 12)) * 100
        time = f"{int(rng.integers(0, 240000)):06d}.{int(rng.integers(0, 999)):03d}"
        views = [] if truth.bad_case == "lateral_only" else [view]
        if truth.bad_case == "lateral_only" or (not truth.bad_case
                                                and rng.random() < lateral_fraction):
            views.append(str(rng.choice(["LATERAL", "LL"])))
        for position in views:
            dicom_id = _dicom_id(rng)
            frontal = position in ("PA", "AP")
            if frontal:
                pixels, masks = _draw_frontal(rng, truth, height, width)
                for name, mask in masks.items():
                    _save_png(out / MASK_DIR / name / f"{dicom_id}.png", mask)
            else:
                pixels = _draw_lateral(rng, height, width)
            path = study_dir / f"{dicom_id}.{image_format}"
            if truth.bad_case != "missing_image" and image_format == "dcm":
                write_radiograph_dicom(path, pixels, dicom_id=dicom_id, view=position,
                                       subject_id=truth.subject_id, study_id=truth.study_id,
                                       compression=dicom_compression)
            elif truth.bad_case != "missing_image":
                _save_jpeg(path, pixels)
            if truth.bad_case == "truncated_jpeg":
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 3])
            (truth.frontal if frontal else truth.lateral).append(dicom_id)
            metadata.append(dict(
                dicom_id=dicom_id, subject_id=truth.subject_id, study_id=truth.study_id,
                PerformedProcedureStepDescription=f"CHEST ({view} AND LAT)",
                ViewPosition=position, Rows=height, Columns=width, StudyDate=date,
                StudyTime=time,
                ProcedureCodeSequence_CodeMeaning=f"CHEST ({view} AND LAT)",
                ViewCodeSequence_CodeMeaning=_VIEW_MEANING[position],
                PatientOrientationCodeSequence_CodeMeaning="Erect"))
            split_rows.append(dict(dicom_id=dicom_id, study_id=truth.study_id,
                                   subject_id=truth.subject_id, split=truth.split))
        report = _report(rng, truth, view)
        if truth.bad_case == "empty_report":
            report = "                                 FINAL REPORT\n EXAMINATION:  CHEST\n\n"
        if truth.bad_case != "missing_report":
            study_dir.parent.mkdir(parents=True, exist_ok=True)
            study_dir.with_suffix(".txt").write_text(report)
        label_rows.append(dict(subject_id=truth.subject_id, study_id=truth.study_id,
                               **truth.labels()))
        truths.append(truth)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / METADATA_CSV, _METADATA_COLUMNS, metadata)
    _write_csv(out / SPLIT_CSV, ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    label_columns = ["subject_id", "study_id", *CHEXPERT_LABELS]
    _write_csv(out / CHEXPERT_CSV, label_columns, label_rows)
    _write_csv(out / NEGBIO_CSV, label_columns, label_rows)
    summary = dict(
        studies=len(truths), seed=seed, image_format=image_format,
        frontal_images=sum(len(t.frontal) for t in truths),
        lateral_images=sum(len(t.lateral) for t in truths),
        bad_cases={t.bad_case: t.study_id for t in truths if t.bad_case},
        truth=[asdict(t) for t in truths])
    (out / TRUTH_JSON).write_text(json.dumps(summary, indent=1))
    return dict(summary, root=str(out))  # not in the file: the tree may be moved
