"""Batch inference for the driving detectors: one nuScenes sample in, one JSON out.

How it plugs into ``tools/infer.py`` (see :mod:`interlace.core.engine.batch_inference`):

* An *input* is a **sample token** of the reader's info file. ``tools/infer.py`` takes
  files on its command line, so tokens come in a list file, one per line:
  ``@tokens.txt`` (a bare token is not a file, so ``tools/infer.py`` refuses it).
  :func:`write_sample_tokens` writes the list of every sample of an info file::

      python tools/analysis_tools/merge_submission.py \\
          --tokens-from data/nuscenes_synthetic/nuscenes_infos_val.pkl --out work_dirs/val_tokens.txt
      python tools/infer.py configs/driving/deepinteraction_r18_synthetic_tiny.py \\
          CKPT @work_dirs/val_tokens.txt --out work_dirs/preds [--drop camera]

* :class:`NuScenesSampleReader` runs the dataset's test pipeline on that sample and
  collates a batch of one (what the test dataloader would hand the model).
* :class:`NuScenesSubmissionWriter` writes ``<token>.json``: the sample's boxes already
  in the submission format (global frame, via :func:`~.submission.sample_detections`).
  The engine skips tokens whose file exists, so a killed run resumes sample by sample.
* :func:`merge_sample_predictions` gathers the per-sample files into one submission,
  validated against the info file's samples, for ``DetectionEval`` or the test server::

      python tools/analysis_tools/merge_submission.py work_dirs/preds \\
          --info data/nuscenes_synthetic/nuscenes_infos_val.pkl --out results_nusc.json

Per-sample file layout::

    {"sample_token": str, "meta": {use_camera, use_lidar, ...},
     "results": [submission box entry, ...]}   # sorted by descending score
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from mmengine.dataset import pseudo_collate

from interlace.core.engine.atomic_files import write_text_atomic
from interlace.core.engine.batch_inference import InferenceReader, InferenceWriter
from interlace.core.engine.registry import INFERENCE_IO

from ..data.info_files import load_info_file
from ..data.nuscenes_names import CLASSES
from .submission import (MAX_BOXES_PER_SAMPLE, SubmissionError, make_meta, sample_detections,
                         write_submission)

__all__ = ["NuScenesSampleReader", "NuScenesSubmissionWriter", "merge_sample_predictions",
           "write_sample_tokens", "sample_tokens", "SAMPLE_FILE_SUFFIX"]

SAMPLE_FILE_SUFFIX = ".json"
# nuScenes tokens are 32 hex digits; anything file-name safe is accepted (custom
# databases), but never a path separator or a leading dot (hidden / parent names).
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")


def _check_token(token: str) -> str:
    token = token.strip()
    if not _TOKEN_PATTERN.match(token):
        raise ValueError(f"{token!r} is not a sample token (letters, digits, '_' and '-' "
                         "only); pass tokens one per line in @tokens.txt")
    return token


def _resolve_info_file(info_file: str, data_root: str = "") -> str:
    """`info_file` as given if it exists, else joined to `data_root` (as ``ann_file``)."""
    if os.path.isfile(info_file) or os.path.isabs(info_file) or not data_root:
        return info_file
    return os.path.join(data_root, info_file)


def sample_tokens(info_file: str | os.PathLike) -> list[str]:
    """The sample tokens of an info file, in its order."""
    _, data_list = load_info_file(info_file)
    return [str(info["token"]) for info in data_list]


def write_sample_tokens(info_file: str | os.PathLike, out_txt: str | os.PathLike) -> Path:
    """Write every sample token of `info_file`, one per line, to `out_txt` (atomically),
    for ``tools/infer.py ... @out_txt``."""
    return write_text_atomic(out_txt, "".join(f"{token}\n" for token in sample_tokens(info_file)))


@INFERENCE_IO.register_module()
class NuScenesSampleReader(InferenceReader):
    """Reads one nuScenes sample, by token, through the test pipeline.

    Args:
        info_file: mmdet3d v1.x info file (absolute, or relative to `data_root` as a
            dataset's ``ann_file``).
        data_root: nuScenes root (``samples/``, ``sweeps/``).
        pipeline: the test pipeline (transform dicts), e.g. the config's
            ``test_dataloader.dataset.pipeline``.
        dataset_options: further :class:`NuScenesDataset` arguments (``metainfo``,
            ``version``, ``data_prefix``, ``modality``).

    ``read(token)`` returns ``pseudo_collate([sample])``: ``inputs`` {points: 1 x (P, 5),
    img: 1 x (V, 3, H, W) when the pipeline loads images} and ``data_samples`` (one
    ``BaseDataElement`` whose metainfo has ``token``, ``lidar2ego``, ``ego2global``, ...).
    """

    def __init__(self, info_file: str, data_root: str, pipeline: Sequence[dict],
                 **dataset_options: Any) -> None:
        self.info_file = _resolve_info_file(info_file, data_root)
        self.data_root = data_root
        self.pipeline = list(pipeline)
        self.dataset_options = dataset_options
        self._dataset = None
        self._index_of_token: dict[str, int] = {}

    @property
    def dataset(self):
        """The :class:`NuScenesDataset`, built on first use (parsing the info file and
        the pipeline costs a second; building the reader stays cheap)."""
        if self._dataset is None:
            from ..data.nuscenes_dataset import NuScenesDataset

            options = dict(self.dataset_options)
            # Inference needs no ground truth: skip parsing it.
            options.setdefault("load_eval_anns", False)
            self._dataset = NuScenesDataset(ann_file=self.info_file, data_root=self.data_root,
                                            pipeline=self.pipeline, test_mode=True,
                                            serialize_data=False, **options)
            self._index_of_token = {str(self._dataset.get_data_info(i)["token"]): i
                                    for i in range(len(self._dataset))}
        return self._dataset

    def read(self, path: str) -> dict:
        token = _check_token(path)
        dataset = self.dataset
        index = self._index_of_token.get(token)
        if index is None:
            raise ValueError(f"sample token {token} is not in {self.info_file}")
        return pseudo_collate([dataset[index]])


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


@INFERENCE_IO.register_module()
class NuScenesSubmissionWriter(InferenceWriter):
    """Writes ``<token>.json`` with one sample's boxes in the submission format.

    Args:
        modality: the submission ``meta`` flags (``use_lidar``, ``use_camera``, ...).
        classes: names of the model's ``labels_3d``.
        max_boxes, too_many, drop_out_of_range: see :func:`~.submission.sample_detections`.
        indent: JSON indent (None: compact).

    ``write(outputs, token, out_path)`` takes ``model.test_step``'s list of one data
    sample with ``pred_instances_3d`` (bboxes_3d (N, 9) geometric centre, LiDAR frame;
    scores_3d (N,); labels_3d (N,)) and the metainfo's ``lidar2ego`` / ``ego2global``.
    """

    def __init__(self, modality: Optional[Mapping[str, Any]] = None,
                 classes: Sequence[str] = CLASSES, max_boxes: int = MAX_BOXES_PER_SAMPLE,
                 too_many: str = "truncate", drop_out_of_range: bool = True,
                 indent: Optional[int] = None) -> None:
        self.meta = make_meta(modality if modality is not None
                              else dict(use_lidar=True, use_camera=True))
        self.classes = tuple(classes)
        self.options = dict(max_boxes=max_boxes, too_many=too_many,
                            drop_out_of_range=drop_out_of_range)
        self.indent = indent

    def output_name(self, path: str) -> str:
        return _check_token(path) + SAMPLE_FILE_SUFFIX

    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        token = _check_token(input_path)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != 1:
            raise ValueError(f"sample {token}: expected test_step to return a list of one "
                             f"data sample, got {type(outputs).__name__}")
        sample = outputs[0]
        found = sample.metainfo.get("token")
        if found is not None and str(found) != token:
            raise ValueError(f"sample {token}: the model returned sample {found}")
        missing = [k for k in ("lidar2ego", "ego2global") if k not in sample.metainfo]
        if "pred_instances_3d" not in sample:
            missing.append("pred_instances_3d")
        if missing:
            raise ValueError(f"sample {token}: the data sample lacks {missing}")
        pred = sample.pred_instances_3d
        entries = sample_detections(
            token, _to_numpy(pred.bboxes_3d), _to_numpy(pred.scores_3d),
            _to_numpy(pred.labels_3d), sample.metainfo["lidar2ego"],
            sample.metainfo["ego2global"], classes=self.classes, **self.options)
        with open(out_path, "w", encoding="utf-8") as stream:
            json.dump(dict(sample_token=token, meta=self.meta, results=entries), stream,
                      indent=self.indent, allow_nan=False)


def _read_sample_file(path: Path, token: str) -> dict:
    try:
        with path.open(encoding="utf-8") as stream:
            payload = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SubmissionError(f"{path}: not valid JSON ({error}); delete it and run "
                              "tools/infer.py again to redo the sample") from None
    if not isinstance(payload, dict) or payload.get("sample_token") != token \
            or not isinstance(payload.get("results"), list):
        raise SubmissionError(f"{path}: not a per-sample prediction file for sample {token} "
                              "(expected sample_token, meta, results)")
    return payload


def merge_sample_predictions(pred_dir: str | os.PathLike, info_file: str | os.PathLike,
                             out_json: str | os.PathLike,
                             modality: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Build the submission JSON from the per-sample files of :class:`NuScenesSubmissionWriter`.

    Args:
        pred_dir: the ``tools/infer.py --out`` folder (``<token>.json`` files; other files,
            such as the manifest, are ignored).
        info_file: the info file of the samples run: the submission must cover exactly
            its samples (DetectionEval asserts that for the split).
        out_json: the submission file to write (atomically, after validation).
        modality: the ``meta`` flags; default those of the per-sample files (which must
            agree).

    Returns:
        ``dict(path, samples, boxes, meta)``.

    Raises:
        SubmissionError: a sample has no file (the run is incomplete: run ``tools/infer.py``
            again, it resumes), a file is unreadable, their ``meta`` disagree, or the merged
            submission fails :func:`~.submission.validate_submission`.
    """
    pred_dir = Path(pred_dir)
    tokens = sample_tokens(info_file)
    missing = [t for t in tokens if not (pred_dir / f"{t}{SAMPLE_FILE_SUFFIX}").is_file()]
    if missing:
        raise SubmissionError(
            f"{pred_dir}: {len(missing)} of the {len(tokens)} samples of {info_file} have no "
            f"prediction file, e.g. {missing[:3]}; run tools/infer.py again with the same "
            "--out to finish them (finished samples are skipped)")
    results: dict[str, list[dict]] = {}
    metas: dict[str, str] = {}
    for token in tokens:
        payload = _read_sample_file(pred_dir / f"{token}{SAMPLE_FILE_SUFFIX}", token)
        results[token] = payload["results"]
        metas.setdefault(json.dumps(payload.get("meta"), sort_keys=True), token)
    if modality is not None:
        meta = make_meta(modality)
    elif len(metas) > 1:
        raise SubmissionError(f"{pred_dir}: the per-sample files disagree on 'meta' "
                              f"({sorted(metas)}); were they written by different runs? "
                              "Pass modality=... to set it")
    else:
        meta = json.loads(next(iter(metas))) if metas else make_meta(None)
    submission = {"meta": meta, "results": results}
    path = write_submission(submission, out_json, expected_tokens=tokens)
    return dict(path=str(path), samples=len(results),
                boxes=sum(len(boxes) for boxes in results.values()), meta=meta)
