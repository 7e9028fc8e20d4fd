"""Medical downstream evaluation: MGCA-style linear probe on frozen image features.

See :mod:`.linear_probe` (feature extraction, per-label logistic regression on 1 / 10 /
100 % of the training studies, AUROC) and :mod:`.export` (per-study probability CSV).
"""
from .export import write_probabilities_csv
from .dice import CxrDiceMetric
from .masks import CxrImageReader, CxrMaskWriter
from .linear_probe import (ProbeResult, extract_features, fit_linear_probe, format_table,
                           run_linear_probe, select_labels, subsample_indices)

__all__ = ["ProbeResult", "extract_features", "fit_linear_probe", "format_table",
           "run_linear_probe", "select_labels", "subsample_indices",
           "write_probabilities_csv", "CxrDiceMetric", "CxrImageReader", "CxrMaskWriter"]
