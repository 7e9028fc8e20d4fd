"""Segmentation masks out of ``tools/infer.py``: an image reader and a PNG / NIfTI writer.

``infer_cfg = dict(reader=dict(type='CxrImageReader', image_size=224),
writer=dict(type='CxrMaskWriter', formats=('png', 'nii.gz')))`` turns every input chest
X-ray into ``<stem>.png`` (0 / 255, the image's own size) and ``<stem>.nii.gz``.
Inputs come from a folder, a glob (``"mimic/files/**/*.jpg"``) or a list file;
:func:`write_frontal_image_list` writes the list of a MIMIC-CXR-JPG tree's frontal
images for ``@list.txt``.

NIfTI orientation. A frontal radiograph is a projection onto the coronal plane, shown
as if facing the patient: rows run head to feet, columns from the patient's right to
their left. The array is stored as it is displayed, ``(H, W)`` uint8 labels 0 / 1 (so
``nibabel.load(f).get_fdata()`` equals the PNG / 255), and the affine says where the axes
point in RAS+ world coordinates: axis 0 (rows) -> inferior (-z), axis 1 (columns) ->
the patient's left (-x), the unused third axis -> anterior (+y); voxel size = pixel
spacing (1 mm unless given), origin at the top-left pixel. ``nibabel.aff2axcodes``
reads ``('I', 'L', 'A')``, and 3D Slicer / ITK-SNAP show the mask upright in their
coronal view. This is correct for PA and AP views as MIMIC-CXR-JPG stores them
(already oriented for display); a lateral view would need another affine.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from interlace.core.engine.atomic_files import atomic_path, write_text_atomic
from interlace.core.engine.batch_inference import InferenceReader, InferenceWriter
from interlace.core.engine.registry import INFERENCE_IO
from interlace.domains.medical.data.mimic import SPLITS, MimicCxrIndex
from interlace.domains.medical.data.segmentation import build_segmentation_transforms

__all__ = ["CxrImageReader", "CxrMaskWriter", "radiograph_affine", "write_mask_png",
           "write_mask_nifti", "write_frontal_image_list", "MASK_FORMATS"]

MASK_FORMATS = ("png", "nii.gz", "nii")


def radiograph_affine(pixel_spacing: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """The 4 x 4 voxel-to-RAS+ affine of a displayed frontal radiograph (see module).

    Args:
        pixel_spacing: (row spacing, column spacing) in mm, as DICOM PixelSpacing.
    """
    row, column = (float(v) for v in pixel_spacing)
    return np.array([[0.0, -column, 0.0, 0.0],    # x (right+) falls along the columns
                     [0.0, 0.0, 1.0, 0.0],        # y (anterior+): the projection axis
                     [-row, 0.0, 0.0, 0.0],       # z (superior+) falls down the rows
                     [0.0, 0.0, 0.0, 1.0]])


def _binary(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {array.shape}")
    return array.astype(bool)


def write_mask_png(mask: np.ndarray | torch.Tensor, path: str | os.PathLike) -> None:
    """Write an (H, W) binary mask as an 8-bit PNG with values 0 / 255 to `path`."""
    Image.fromarray(_binary(mask).astype(np.uint8) * 255, mode="L").save(path, format="PNG")


def write_mask_nifti(mask: np.ndarray | torch.Tensor, path: str | os.PathLike,
                     pixel_spacing: Sequence[float] = (1.0, 1.0)) -> None:
    """Write an (H, W) binary mask as a NIfTI-1 label map (uint8 0 / 1) with
    :func:`radiograph_affine`; ``.nii.gz`` in `path` compresses."""
    image = nib.Nifti1Image(_binary(mask).astype(np.uint8), radiograph_affine(pixel_spacing))
    # code 1 (scanner): the affine is a physical orientation, not a template space.
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    nib.save(image, os.fspath(path))


def _write_atomically(write: Any, mask: np.ndarray, final_path: str) -> None:
    with atomic_path(final_path) as tmp:
        write(mask, os.fspath(tmp))


@INFERENCE_IO.register_module()
class CxrImageReader(InferenceReader):
    """One chest X-ray file (JPG / PNG / DICOM) as a batch for ``CxrSegmenter``.

    The image goes through the evaluation transforms of training
    (:func:`build_segmentation_transforms`: resize long side + pad to `image_size`,
    normalise), and its data sample carries ``seg_geometry`` so the model returns the
    probability map at the file's own size. Unreadable files raise ``ImageLoadError``
    naming the file (the engine records it and goes on).
    """

    def __init__(self, image_size: int = 224, max_value: float = 255.0) -> None:
        self.transforms = build_segmentation_transforms(
            False, image_size=image_size, max_value=max_value, with_mask=False)

    def read(self, path: str) -> dict:
        sample = self.transforms(dict(img_path=path))
        return dict(inputs=[sample["img"]],
                    data_samples=[dict(img_path=path, seg_geometry=sample["seg_geometry"])])


@INFERENCE_IO.register_module()
class CxrMaskWriter(InferenceWriter):
    """Thresholded masks as PNG (0 / 255) and / or NIfTI (0 / 1, see the module).

    Args:
        formats: file types to write, from ``MASK_FORMATS``; the first one names the
            output the engine tracks (skip-if-exists, manifest), the others are written
            next to it first, each atomically, so a present first file means a complete
            set.
        threshold: probability above which a pixel is foreground.
        pixel_spacing: (row, column) mm for the NIfTI affine.
        relative_to: keep the input's folders below this root in the output names (a
            tree whose file names repeat); by default only the file stem is used.
    """

    def __init__(self, formats: Sequence[str] = ("png", "nii.gz"), threshold: float = 0.5,
                 pixel_spacing: Sequence[float] = (1.0, 1.0),
                 relative_to: str | None = None) -> None:
        formats = tuple(f.lstrip(".").lower() for f in formats)
        unknown = [f for f in formats if f not in MASK_FORMATS]
        if not formats or unknown or len(set(formats)) != len(formats):
            raise ValueError(f"CxrMaskWriter: formats must be distinct values of "
                             f"{MASK_FORMATS}, got {formats}")
        self.formats, self.threshold = formats, threshold
        self.pixel_spacing, self.relative_to = tuple(pixel_spacing), relative_to

    def _base_name(self, path: str) -> str:
        stem = Path(path).name.split(".")[0]
        if self.relative_to is None:
            return stem
        parent = os.path.relpath(os.path.dirname(os.path.abspath(path)),
                                 os.path.abspath(self.relative_to))
        return os.path.normpath(os.path.join(parent, stem))

    def output_name(self, path: str) -> str:
        return f"{self._base_name(path)}.{self.formats[0]}"

    def _writer(self, fmt: str) -> Any:
        if fmt == "png":
            return write_mask_png
        return lambda mask, path: write_mask_nifti(mask, path, self.pixel_spacing)

    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        """Write the mask of the single output in `outputs` (``pred_prob``: (H, W))."""
        if not isinstance(outputs, (list, tuple)) or len(outputs) != 1:
            raise ValueError(f"CxrMaskWriter expects one model output per input, got "
                             f"{type(outputs).__name__} of {len(outputs) if hasattr(outputs, '__len__') else '?'}")
        output = outputs[0]
        if "pred_prob" not in output:
            raise KeyError(f"{input_path}: the model output has no 'pred_prob' (the reader "
                           "must give seg_geometry)")
        mask = torch.as_tensor(output["pred_prob"]).float().cpu().numpy() > self.threshold
        # `out_path` is the engine's temporary name; the siblings go next to the final one.
        directory = os.path.dirname(out_path)
        base = os.path.basename(self._base_name(input_path))
        for fmt in self.formats[1:]:
            _write_atomically(self._writer(fmt), mask, os.path.join(directory, f"{base}.{fmt}"))
        self._writer(self.formats[0])(mask, out_path)


def write_frontal_image_list(root: str | os.PathLike, out: str | os.PathLike,
                             splits: Sequence[str] = SPLITS) -> int:
    """Write the frontal images of a MIMIC-CXR-JPG tree (one path a line) for
    ``tools/infer.py ... @out``; laterals are left out, as the model never saw one.
    Returns the number of images listed. Written atomically."""
    records = MimicCxrIndex(root, unit="image").build().records
    paths = [r.img_path for r in records if r.split in splits]
    write_text_atomic(out, "".join(f"{p}\n" for p in paths))
    return len(paths)
