"""`CBGSDataset`: class-balanced resampling of a detection dataset (CBGS, Zhu et al. 2019,
"Class-balanced Grouping and Sampling for Point Cloud 3D Object Detection", Sec. 3.1).

Every class gets a list of the samples that contain it (a sample with three classes is in
three lists). With ``D`` the total length of those lists and ``K`` the number of classes, a
class of ``n_c`` samples is drawn ``n_c * (1/K) / (n_c/D) = D/K`` times, with replacement,
from its list: after resampling every class is present in the same number of draws, so
rare classes (bicycle, construction vehicle) are seen as often as cars.

As mmdet3d's ``CBGSDataset``, except: ``D // K`` is computed in integers (mmdet3d's
floating-point ``int(n_c * ratio)`` can round D/K down by one); classes present in no
sample are left out of ``K`` (mmdet3d divides by zero on them), so on a dataset holding
every class the two agree; and an optional ``seed`` makes the draw reproducible (mmdet3d
uses numpy's global generator, which is what ``seed=None`` does here).
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Optional

import numpy as np
from mmengine.dataset import BaseDataset, force_full_init

from interlace.core.engine.registry import DATASETS


@DATASETS.register_module()
class CBGSDataset:
    """Wraps a dataset with ``get_cat_ids(idx)`` and ``metainfo['classes']``.

    Args:
        dataset: the dataset, or its config dict (built from DATASETS).
        lazy_init: defer ``full_init`` (and the wrapped dataset's) to first use.
        seed: seed of the draw; None uses numpy's global generator (seeded by mmengine's
            ``randomness`` setting).

    Attributes:
        class_sample_indices: ``{label: drawn indices}`` of the last ``full_init``.
        sample_indices: the resampled indices into the wrapped dataset, class by class.
    """

    def __init__(self, dataset: BaseDataset | dict, lazy_init: bool = False,
                 seed: Optional[int] = None) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if not hasattr(dataset, "get_cat_ids") or not hasattr(dataset, "metainfo"):
            raise TypeError(f"CBGSDataset wraps a dataset with get_cat_ids and metainfo "
                            f"(a config dict or BaseDataset), got {type(dataset).__name__}")
        self.dataset = dataset
        self.seed = seed
        self._metainfo = dataset.metainfo
        self.class_sample_indices: dict[int, list[int]] = {}
        self.sample_indices: list[int] = []
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self._metainfo)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        if hasattr(self.dataset, "full_init"):
            self.dataset.full_init()
        self.sample_indices = self._resample()
        self._fully_initialized = True

    def _resample(self) -> list[int]:
        num_classes = len(self._metainfo["classes"])
        samples_of_class: dict[int, list[int]] = {label: [] for label in range(num_classes)}
        for idx in range(len(self.dataset)):
            for label in self.dataset.get_cat_ids(idx):
                if 0 <= label < num_classes:  # -1: a class not trained on
                    samples_of_class[label].append(idx)
        present = {label: idxs for label, idxs in samples_of_class.items() if idxs}
        if not present:
            raise ValueError(f"CBGSDataset: no sample of {type(self.dataset).__name__} "
                             f"contains any of the classes {self._metainfo['classes']}")
        draws_per_class = sum(len(idxs) for idxs in present.values()) // len(present)
        random = np.random.default_rng(self.seed) if self.seed is not None else np.random
        self.class_sample_indices = {
            label: random.choice(idxs, draws_per_class).tolist()
            for label, idxs in present.items()}
        return [idx for idxs in self.class_sample_indices.values() for idx in idxs]

    @force_full_init
    def _get_ori_dataset_idx(self, idx: int) -> int:
        return self.sample_indices[idx]

    @force_full_init
    def get_cat_ids(self, idx: int) -> Any:
        return self.dataset.get_cat_ids(self._get_ori_dataset_idx(idx))

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self._get_ori_dataset_idx(idx))

    def __getitem__(self, idx: int) -> Any:
        if not self._fully_initialized:
            warnings.warn("CBGSDataset: call full_init() before indexing to avoid the delay "
                          "on the first item")
            self.full_init()
        return self.dataset[self._get_ori_dataset_idx(idx)]

    @force_full_init
    def __len__(self) -> int:
        return len(self.sample_indices)

    def get_subset_(self, indices: Any) -> None:
        raise NotImplementedError("CBGSDataset has no get_subset_: take the subset of the "
                                  "wrapped dataset first, then wrap it")

    def get_subset(self, indices: Any) -> Any:
        raise NotImplementedError("CBGSDataset has no get_subset: take the subset of the "
                                  "wrapped dataset first, then wrap it")
