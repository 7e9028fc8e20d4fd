"""A small synthetic MIMIC-CXR-JPG 2.0 set whose labels match what is drawn.

Writes the published layout (``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg``, the
report next to the study folder as ``sXXXXXXXX.txt``, and the four
``mimic-cxr-2.0.0-*.csv`` tables) so the real readers run on it unchanged. Each frontal
image is a rough radiograph drawn with numpy (dark lungs, bright mediastinum, ribs,
diaphragm) plus the study's findings at their place, and the report names them with
location words; the CheXpert / NegBio tables agree with both. ``synthetic_truth.json``
records the drawn findings per study for tests and demos.

Image orientation follows radiology: the patient's right lung is on the viewer's left.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .chexpert import CHEXPERT_LABELS

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


def _draw_frontal(rng: np.random.Generator, truth: StudyTruth, height: int,
                  width: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A (height, width) uint8 frontal radiograph with the study's findings, and a
    (height, width) bool mask per entry of `MASK_FINDINGS` (empty when absent)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y /= height                      # 0 top .. 1 bottom
    x = (x / width) * 2.0 - 1.0      # -1 viewer's left (patient's right) .. 1
    image = np.full((height, width), 12.0, np.float32)
    body = (x / 0.92) ** 2 + ((y - 0.55) / 0.6) ** 2 < 1.0
    image[body] = 105.0
    lungs = np.zeros_like(body)
    centres = {"right": -0.42, "left": 0.42}
    for cx in centres.values():
        lungs |= ((x - cx) / 0.3) ** 2 + ((y - 0.45) / 0.34) ** 2 < 1.0
    image[lungs] = 38.0
    ribs = lungs & (np.sin(y * 55.0 + np.abs(x) * 7.0) > 0.75)
    image[ribs] += 30.0
    image[(np.abs(x) < 0.11) & body] = 195.0                     # spine / mediastinum
    heart_rx = 0.42 if truth.cardiomegaly else 0.26              # CTR > 0.5 when enlarged
    heart = ((x - 0.08) / heart_rx) ** 2 + ((y - 0.66) / 0.16) ** 2 < 1.0
    image[heart] = 175.0
    masks = {name: np.zeros((height, width), bool) for name in MASK_FINDINGS}
    masks["heart"] = heart.copy()
    image[body & (y > 0.82 + 0.05 * np.abs(x))] = 150.0           # diaphragm / abdomen
    if truth.opacity:
        side, zone = truth.opacity
        cy = 0.3 if zone == "upper" else 0.58
        strength = 55.0 if truth.opacity_uncertain else 110.0
        blob = np.exp(-(((x - centres[side]) / 0.1) ** 2 + ((y - cy) / 0.07) ** 2))
        image += strength * blob * lungs
        masks["opacity"] = (blob > 0.5) & lungs
    if truth.effusion:
        cx = centres[truth.effusion]
        # Meniscus: fluid fills the base and climbs the lateral chest wall.
        lateral = np.clip((np.abs(x) - abs(cx) + 0.3) / 0.6, 0.0, 1.0)
        level = 0.72 - 0.12 * lateral ** 2
        fluid = lungs & ~heart & (np.sign(x) == np.sign(cx)) & (y > level)
        image[fluid] = 165.0
        masks["effusion"] = fluid
    if truth.support_device:  # endotracheal tube down the trachea, then its tip
        tube = (np.abs(x - 0.015) < 1.5 * 2.0 / width) & (y > 0.02) & (y < 0.33)
        image[tube] = 250.0
        masks["device"] = tube
    image += rng.normal(0.0, 4.0, image.shape)
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
    tmp = path.with_name(path.name + ".tmp")  # never leave a half-written table
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def make_synthetic_mimic(out: str | Path, studies: int = 100, seed: int = 0, *,
                         with_bad_cases: bool = False, lateral_fraction: float = 0.25,
                         min_size: int = 256, max_size: int = 512) -> dict[str, Any]:
    """Write a synthetic MIMIC-CXR-JPG 2.0 tree under `out`; deterministic given `seed`.

    Every study has one frontal image (PA, or AP when intubated); about
    ``lateral_fraction`` of them also get a lateral (LATERAL / LL), i.e. ~20 % of all
    images. ``with_bad_cases`` adds five broken studies, one per problem the readers must
    survive: empty report, lateral view only, truncated JPEG, missing report file,
    missing image file. Returns a summary with the counts and ``truth`` (per study).
    """
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
            path = study_dir / f"{dicom_id}.jpg"
            if truth.bad_case != "missing_image":
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
        studies=len(truths), seed=seed,
        frontal_images=sum(len(t.frontal) for t in truths),
        lateral_images=sum(len(t.lateral) for t in truths),
        bad_cases={t.bad_case: t.study_id for t in truths if t.bad_case},
        truth=[asdict(t) for t in truths])
    (out / TRUTH_JSON).write_text(json.dumps(summary, indent=1))
    return dict(summary, root=str(out))  # not in the file: the tree may be moved
