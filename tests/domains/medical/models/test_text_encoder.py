import pytest
import torch

from interlace.domains.medical.models import ReportTextEncoder, build_wordpiece_tokenizer

from .conftest import TINY_BERT


def test_text_encoder_keeps_only_the_first_layers(tokenizer):
    encoder = ReportTextEncoder(config=TINY_BERT, num_layers=2, tokenizer=tokenizer)
    assert encoder.num_layers == 2 == len(encoder.model.encoder.layer)
    assert encoder.embed_dims == 32


def test_text_encoder_rejects_more_layers_than_the_model_has(tokenizer):
    with pytest.raises(ValueError, match="num_layers"):
        ReportTextEncoder(config=TINY_BERT, num_layers=5, tokenizer=tokenizer)


def test_text_encoder_merges_word_pieces_into_whole_words(tokenizer):
    assert tokenizer.tokenize("pneumothorax") == ["pneumo", "##thor", "##ax"]
    encoder = ReportTextEncoder(config=TINY_BERT, num_layers=2, tokenizer=tokenizer)
    out = encoder(["Small left pneumothorax.", "lungs are clear"])
    assert out.words == [["small", "left", "pneumothorax", "."], ["lungs", "are", "clear"]]
    assert out.report_features.shape == (2, 32)
    assert out.word_embeddings.shape == (2, 4, 32)
    assert out.word_mask.tolist() == [[False] * 4, [False, False, False, True]]
    assert (out.word_weights[out.word_mask] == 0).all()
    assert (out.word_weights[~out.word_mask] > 0).all()
    # Word weights are [CLS] attention shares: with [CLS]/[SEP] dropped they sum below 1.
    assert (out.word_weights.sum(dim=1) < 1).all()


def test_text_encoder_truncates_to_max_length(tokenizer):
    encoder = ReportTextEncoder(config=TINY_BERT, num_layers=1, tokenizer=tokenizer,
                                max_length=5)
    out = encoder(["no left right small large effusion"])
    assert out.words == [["no", "left", "right"]]  # [CLS] + 3 words + [SEP]


def test_in_memory_vocabulary_builds_a_wordpiece_tokenizer():
    tokenizer = build_wordpiece_tokenizer(["pneumo", "##thor", "##ax", "."])
    assert tokenizer.tokenize("Pneumothorax.") == ["pneumo", "##thor", "##ax", "."]
    encoder = ReportTextEncoder(config=TINY_BERT, num_layers=1, vocab=["no", "pneumo", "##thor",
                                                                        "##ax"])
    assert encoder(["no pneumothorax"]).words == [["no", "pneumothorax"]]


def test_text_encoder_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        ReportTextEncoder()
    with pytest.raises(ValueError, match="tokenizer"):
        ReportTextEncoder(config=TINY_BERT, num_layers=2)


def test_text_encoder_loads_a_local_model_folder_offline(tmp_path, tokenizer):
    source = ReportTextEncoder(config=TINY_BERT, num_layers=None, tokenizer=tokenizer)
    source.model.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    encoder = ReportTextEncoder(model_path=str(tmp_path / "bert"), num_layers=2)
    assert encoder.num_layers == 2
    assert torch.equal(encoder.model.embeddings.word_embeddings.weight,
                       source.model.embeddings.word_embeddings.weight)
    assert encoder(["no pneumothorax"]).words == [["no", "pneumothorax"]]
