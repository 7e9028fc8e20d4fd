"""Medical downstream evaluation.

:mod:`.linear_probe` (MGCA-style probe on frozen features: 1 / 10 / 100 % of the training
studies, AUROC), :mod:`.export` (per-study probability CSV), :mod:`.dice` (MONAI Dice as
an mmengine metric), :mod:`.masks` (PNG + NIfTI mask writer for tools/infer.py) and
:mod:`.token_attention` (where report words attend in the image) and :mod:`.grounding`
(that attention scored against the generated findings' masks over a whole set).
"""
from .dice import CxrDiceMetric
from .export import write_probabilities_csv
from .grounding import evaluate_grounding, format_grounding
from .linear_probe import (ProbeResult, extract_features, fit_linear_probe, format_table,
                           run_linear_probe, select_labels, subsample_indices)
from .masks import CxrImageReader, CxrMaskWriter
from .token_attention import (WordAttention, attention_mass_in_mask, attention_peak_hits,
                              finding_words, save_attention_overlay, word_patch_attention)

__all__ = ["CxrDiceMetric", "CxrImageReader", "CxrMaskWriter", "ProbeResult",
           "WordAttention", "attention_mass_in_mask", "attention_peak_hits",
           "evaluate_grounding", "extract_features", "finding_words", "fit_linear_probe",
           "format_grounding", "format_table", "run_linear_probe", "save_attention_overlay",
           "select_labels", "subsample_indices", "word_patch_attention",
           "write_probabilities_csv"]
