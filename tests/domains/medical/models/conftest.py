"""Tiny, offline building blocks for the MGCA model tests."""
from __future__ import annotations

import pytest
from transformers import BertTokenizer

# "pneumothorax" is deliberately absent as a whole word: it must split into pieces.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "small", "large", "left",
         "right", "pneumo", "##thor", "##ax", "effusion", "lungs", "are", "clear", "heart",
         "size", "is", "normal", "enlarged", "cardiac", "silhouette", "pleural", ".", ","]
TINY_BERT = dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=32,
                 num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
REPORTS = ["left pneumothorax is large.", "lungs are clear. heart size is normal.",
           "small right pleural effusion.", "cardiac silhouette is enlarged."]


@pytest.fixture
def tokenizer(tmp_path):
    """A BERT WordPiece tokenizer read from a vocab file written here (no hub)."""
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    # transformers 5: `vocab` takes the vocab file's path (4.x called it `vocab_file`).
    return BertTokenizer(vocab=str(vocab_file), do_lower_case=True)
