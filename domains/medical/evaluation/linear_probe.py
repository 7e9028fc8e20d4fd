"""Linear probe on frozen image features (MGCA's classification protocol).

MGCA evaluates its image encoder by training a linear classifier on frozen features with
1 %, 10 % and 100 % of the training labels and reporting AUROC (CheXpert, 5 labels).
Here:

* :func:`extract_features` runs the encoder once over a dataset (eval mode, no grad).
* :func:`fit_linear_probe` trains one L2-regularised logistic regression per label
  (scikit-learn ``LogisticRegression``, lbfgs; binary relevance, i.e. one independent
  classifier per label, as a linear layer with per-label BCE would be) on a random
  `fraction` of the training studies, on features standardised with the subset's mean and
  standard deviation, and scores the validation studies with MONAI's
  :func:`~monai.metrics.compute_roc_auc`.
* :func:`run_linear_probe` repeats that over fractions and seeds and gives mean and
  standard deviation (population, ``ddof=0``) per fraction.

A label is only scored when it has both classes among the (masked) training studies of
the subset and among the validation studies; otherwise its AUROC is NaN and it is listed
in ``skipped`` with the reason.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

__all__ = ["ProbeResult", "extract_features", "subsample_indices", "select_labels",
           "fit_linear_probe", "run_linear_probe", "format_table"]


# --------------------------------------------------------------------------- features
@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: Any, batch_size: int = 32,
                     device: str | torch.device = "cpu", projected: bool = False,
                     image_key: str = "img", progress: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Frozen image features of every sample of `dataset`.

    Args:
        model: exposes ``extract_image_features(images, projected)`` (e.g. ``MGCA``); put in
            eval mode for the extraction (its previous mode is restored afterwards).
        dataset: indexable; each sample is a dict with `image_key` (a (C, H, W) tensor or
            array), ``labels`` (K,), ``label_mask`` (K,) and ``study_id``. A dataset with
            ``prepare_data`` (mmengine ``BaseDataset``) is read through it, so samples
            whose image cannot be read (``None``) are skipped instead of replaced.
        batch_size: images per forward pass.
        device: where the model runs.
        projected: False = the encoder's global feature (MGCA's probe); True = the
            L2-normalised embedding.
        progress: show an mmengine progress bar.

    Returns:
        ``(features (N, D) float32, labels (N, K) float32, label_mask (N, K) float32,
        study_ids)`` in dataset order.
    """
    from mmengine.utils import ProgressBar

    was_training = model.training
    model.eval()
    model.to(device)
    read = getattr(dataset, "prepare_data", None) or dataset.__getitem__
    features, labels, masks, study_ids = [], [], [], []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            images = torch.stack(batch).to(device=device, dtype=torch.float32)
            out = model.extract_image_features(images, projected=projected)
            features.append(out.float().cpu().numpy())
            batch.clear()

    total = len(dataset)
    bar = ProgressBar(total) if progress and total else None
    try:
        for index in range(total):
            sample = read(index)
            if bar is not None:
                bar.update()
            if sample is None:
                continue
            image = sample[image_key]
            batch.append(torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor)
                                         else image))
            labels.append(np.asarray(sample["labels"], dtype=np.float32))
            masks.append(np.asarray(sample.get("label_mask", np.ones_like(labels[-1])),
                                    dtype=np.float32))
            study_ids.append(sample.get("study_id", index))
            if len(batch) == batch_size:
                flush()
        flush()
    finally:
        if bar is not None:
            print(flush=True)
        model.train(was_training)
    if not labels:
        raise ValueError("extract_features: the dataset yielded no sample")
    return (np.concatenate(features).astype(np.float32), np.stack(labels), np.stack(masks),
            study_ids)


# ----------------------------------------------------------------------- subsampling
def subsample_indices(labels: np.ndarray, mask: Optional[np.ndarray], fraction: float,
                      seed: int) -> np.ndarray:
    """A random `fraction` of the rows (studies), keeping both classes of every label.

    ``n = max(1, round(fraction * N))`` rows are drawn (all rows for ``fraction >= 1``).
    First, for each label in turn (rarest first), a positive and a negative are drawn
    unless the rows already chosen hold one, so that every label that has both classes
    keeps them (if these seed rows alone exceed ``n``, they are all kept: at most 2 rows
    per label). The rest are drawn uniformly from the remaining rows.

    Returns:
        Sorted row indices.
    """
    labels = np.asarray(labels)
    n_rows = labels.shape[0]
    if not 0 < fraction:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    if fraction >= 1.0:
        return np.arange(n_rows)
    mask = np.ones_like(labels, dtype=bool) if mask is None else np.asarray(mask) > 0
    target = max(1, int(round(fraction * n_rows)))
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    chosen_set: set[int] = set()
    positives = (labels > 0.5) & mask
    negatives = (labels <= 0.5) & mask
    order = np.argsort(np.minimum(positives.sum(0), negatives.sum(0)), kind="stable")
    for k in order:
        for pool in (positives[:, k], negatives[:, k]):
            candidates = np.flatnonzero(pool)
            if candidates.size == 0 or pool[chosen].any():
                continue
            pick = int(rng.choice(candidates))
            chosen.append(pick)
            chosen_set.add(pick)
    rest = np.array([i for i in range(n_rows) if i not in chosen_set], dtype=np.int64)
    extra = max(0, target - len(chosen))
    if extra:
        chosen.extend(rng.choice(rest, size=min(extra, rest.size), replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _both_classes(labels: np.ndarray, mask: np.ndarray) -> bool:
    valid = labels[mask > 0]
    return bool(valid.size) and bool((valid > 0.5).any()) and bool((valid <= 0.5).any())


def select_labels(train_y: np.ndarray, train_mask: np.ndarray, val_y: np.ndarray,
                  val_mask: np.ndarray, label_names: Sequence[str]
                  ) -> tuple[list[str], dict[str, str]]:
    """The labels with both classes in training and in validation, and why the others
    were left out: ``(kept names, {skipped name: reason})``."""
    kept, skipped = [], {}
    for k, name in enumerate(label_names):
        if not _both_classes(train_y[:, k], train_mask[:, k]):
            skipped[name] = "single class in training"
        elif not _both_classes(val_y[:, k], val_mask[:, k]):
            skipped[name] = "single class in validation"
        else:
            kept.append(name)
    return kept, skipped


# ----------------------------------------------------------------------------- probe
@dataclass
class ProbeResult:
    """One probe fit (one fraction, one seed).

    Attributes:
        auroc: label -> validation AUROC (NaN for skipped labels).
        mean_auroc: mean over the scored labels (NaN if none).
        skipped: label -> reason it was not scored.
        train_indices: rows of the training set used.
        probabilities: (N_val, K) predicted probabilities, NaN columns for skipped labels.
    """

    auroc: dict[str, float]
    mean_auroc: float
    skipped: dict[str, str]
    train_indices: np.ndarray
    probabilities: np.ndarray = field(repr=False)

    @property
    def num_train(self) -> int:
        return int(len(self.train_indices))


def _auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    from monai.metrics import compute_roc_auc

    return float(compute_roc_auc(torch.as_tensor(scores, dtype=torch.float64),
                                 torch.as_tensor(targets, dtype=torch.float64)))


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, train_mask: Optional[np.ndarray],
                     val_x: np.ndarray, val_y: np.ndarray, val_mask: Optional[np.ndarray],
                     fraction: float = 1.0, seed: int = 0,
                     label_names: Optional[Sequence[str]] = None, C: float = 1.0,
                     max_iter: int = 1000) -> ProbeResult:
    """Train a per-label logistic regression on a `fraction` of the training studies.

    Args:
        train_x, val_x: (N, D) / (M, D) frozen features.
        train_y, val_y: (N, K) / (M, K) binary labels (> 0.5 is positive).
        train_mask, val_mask: (N, K) / (M, K), 0 = label not usable for that study
            (None = all usable).
        fraction: share of the training rows used (see :func:`subsample_indices`).
        seed: seeds the subset and the classifier.
        label_names: K names (default ``label_0`` ...).
        C: inverse L2 strength of ``LogisticRegression``.

    Returns:
        A :class:`ProbeResult`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_x, val_x = np.asarray(train_x, np.float64), np.asarray(val_x, np.float64)
    train_y, val_y = np.asarray(train_y, np.float32), np.asarray(val_y, np.float32)
    if train_y.ndim == 1:
        train_y, val_y = train_y[:, None], val_y[:, None]
    n_labels = train_y.shape[1]
    train_mask = np.ones_like(train_y) if train_mask is None else np.asarray(train_mask)
    val_mask = np.ones_like(val_y) if val_mask is None else np.asarray(val_mask)
    if train_mask.ndim == 1:
        train_mask, val_mask = train_mask[:, None], val_mask[:, None]
    names = list(label_names) if label_names is not None else [f"label_{k}"
                                                               for k in range(n_labels)]
    if len(names) != n_labels:
        raise ValueError(f"{len(names)} label names for {n_labels} label columns")

    rows = subsample_indices(train_y, train_mask, fraction, seed)
    x = train_x[rows]
    scaler = StandardScaler().fit(x)
    x, vx = scaler.transform(x), scaler.transform(val_x)

    auroc: dict[str, float] = {}
    skipped: dict[str, str] = {}
    probabilities = np.full((val_x.shape[0], n_labels), np.nan, dtype=np.float64)
    for k, name in enumerate(names):
        valid = train_mask[rows, k] > 0
        targets = (train_y[rows, k][valid] > 0.5).astype(np.int64)
        val_valid = val_mask[:, k] > 0
        val_targets = (val_y[:, k][val_valid] > 0.5).astype(np.int64)
        if targets.size == 0 or targets.min() == targets.max():
            skipped[name] = "single class in training subset"
        elif val_targets.size == 0 or val_targets.min() == val_targets.max():
            skipped[name] = "single class in validation"
        if name in skipped:
            auroc[name] = math.nan
            continue
        classifier = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs convergence on tiny subsets
            classifier.fit(x[valid], targets)
        probabilities[:, k] = classifier.predict_proba(vx)[:, 1]
        auroc[name] = _auroc(probabilities[val_valid, k], val_targets)
    scored = [v for v in auroc.values() if not math.isnan(v)]
    mean = float(np.mean(scored)) if scored else math.nan
    return ProbeResult(auroc=auroc, mean_auroc=mean, skipped=skipped, train_indices=rows,
                       probabilities=probabilities)


def _summary(values: Sequence[float]) -> dict[str, Any]:
    finite = [v for v in values if not math.isnan(v)]
    return dict(mean=float(np.mean(finite)) if finite else math.nan,
                std=float(np.std(finite)) if finite else math.nan,
                values=[float(v) for v in values])


def run_linear_probe(train_x: np.ndarray, train_y: np.ndarray, train_mask: Optional[np.ndarray],
                     val_x: np.ndarray, val_y: np.ndarray, val_mask: Optional[np.ndarray],
                     label_names: Optional[Sequence[str]] = None,
                     fractions: Sequence[float] = (0.01, 0.1, 1.0),
                     seeds: Sequence[int] = (0, 1, 2), C: float = 1.0,
                     keep_probabilities: bool = False) -> dict[str, Any]:
    """:func:`fit_linear_probe` for every fraction and seed.

    Returns:
        ``dict(labels, fractions, seeds, results, skipped)`` where ``results`` maps
        ``str(fraction)`` to ``dict(num_train, per_label={label: dict(mean, std, values)},
        mean_auroc=dict(mean, std, values))``: per label and for the mean over labels, the
        mean and standard deviation over the seeds (NaN seeds left out) and the per-seed
        values. ``skipped`` maps ``str(fraction)`` to the labels skipped by any seed and
        why. With ``keep_probabilities`` the :class:`ProbeResult` objects are returned as
        ``fits[str(fraction)][seed]`` too (not JSON-serialisable).
    """
    train_y = np.asarray(train_y)
    n_labels = train_y.shape[1] if train_y.ndim == 2 else 1
    names = list(label_names) if label_names is not None else [f"label_{k}"
                                                               for k in range(n_labels)]
    results: dict[str, Any] = {}
    skipped: dict[str, dict[str, str]] = {}
    fits: dict[str, dict[int, ProbeResult]] = {}
    for fraction in fractions:
        key = str(float(fraction))
        runs = [fit_linear_probe(train_x, train_y, train_mask, val_x, val_y, val_mask,
                                 fraction=fraction, seed=seed, label_names=names, C=C)
                for seed in seeds]
        results[key] = dict(
            num_train=[run.num_train for run in runs],
            per_label={name: _summary([run.auroc[name] for run in runs]) for name in names},
            mean_auroc=_summary([run.mean_auroc for run in runs]))
        skipped[key] = {name: reason for run in runs for name, reason in run.skipped.items()}
        if keep_probabilities:
            fits[key] = dict(zip(seeds, runs))
    out = dict(labels=names, fractions=[float(f) for f in fractions],
               seeds=[int(s) for s in seeds], results=results, skipped=skipped)
    if keep_probabilities:
        out["fits"] = fits
    return out


def format_table(table: dict[str, Any], scale: float = 100.0) -> str:
    """A text table: one row per fraction, one column per label plus the mean, each
    ``mean ± std`` over seeds (AUROC x `scale`)."""
    names = list(table["labels"])
    header = ["fraction", "n_train", *names, "mean"]
    rows = []
    for key, result in table["results"].items():
        def cell(summary: dict[str, Any]) -> str:
            if math.isnan(summary["mean"]):
                return "n/a"
            return f"{summary['mean'] * scale:.1f} ± {summary['std'] * scale:.1f}"
        n_train = sorted(set(result["num_train"]))
        rows.append([f"{float(key) * 100:g} %", "/".join(map(str, n_train)),
                     *(cell(result["per_label"][n]) for n in names),
                     cell(result["mean_auroc"])])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
