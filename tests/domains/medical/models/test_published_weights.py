"""The released MGCA checkpoints and Hugging Face BERT folders, in their published layouts:
each file is built here from our own modules (random values, the published keys, shapes and
wrappers), loaded, and every tensor checked against its source.

Key counts asserted (loaded / missing / unexpected; "dropped" = discarded by the key map):

==========================================================  ======  =======  ==========  =======
file -> receiver                                            loaded  missing  unexpected  dropped
==========================================================  ======  =======  ==========  =======
MGCA ResNet-50 .ckpt (6-layer BERT) -> MGCA                 468     1        8           61
MGCA ResNet-50 .ckpt -> encoder of the probe's MGCA         318     0        0           0
MGCA ResNet-50 .ckpt -> CxrSegmenter encoder (strict)       318     0        0           0
MGCA ViT-B/16 .ckpt -> MGCA's ViT encoder                   150     0        0           0
==========================================================  ======  =======  ==========  =======

ResNet-50: 318 = torchvision's 320 minus the fc MGCA replaced by an Identity. MGCA: 318 +
4 projection heads x 12 (Linear, BN, ReLU, Linear, BN without affine) + BERT (4 embedding
tensors + a zero token-type embedding + 6 layers x 16 = 101; ``position_ids`` and the 6 x 10
unused cross-attention tensors of BLIP's BERT dropped) + 1 prototype matrix = 468; the 8
unexpected are MGCA's two token-attention layers (Interlace's token alignment has no
parameters); the 1 missing is ``instance_loss.logit_scale``, a buffer of ours. ViT-B/16:
cls + pos + patch conv (2) + 12 blocks x 12 + final norm (2) = 150.
"""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from interlace.core.engine.checkpoint import load_weights
from interlace.domains.medical.models import MGCA
from interlace.domains.medical.models.image_encoders import ResNetImageEncoder, ViTImageEncoder
from interlace.domains.medical.models.published_weights import load_mgca_weights
from interlace.domains.medical.models.segmentation import CxrSegmenter
from interlace.domains.medical.models.text_encoder import ReportTextEncoder

from .conftest import VOCAB

BERT6 = dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=6,
             num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _random(module) -> "OrderedDict[str, torch.Tensor]":
    generator = torch.Generator().manual_seed(0)
    return OrderedDict(
        (k, torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone())
        for k, v in module.state_dict().items())


def _mgca(tokenizer, image_encoder=None) -> MGCA:
    return MGCA(image_encoder=image_encoder or dict(type="ResNetImageEncoder", depth=50),
                text_encoder=dict(type="ReportTextEncoder", config=BERT6, num_layers=6,
                                  tokenizer=tokenizer),
                prototype_loss=dict(type="PrototypeAlignmentLoss", num_prototypes=500))


def _embed(head: "OrderedDict[str, torch.Tensor]", conv1d: bool) -> dict:
    """Our ProjectionHead tensors as MGCA's Global/LocalEmbedding ``head.k`` (Conv1d
    weights (O, I, 1) for the local one)."""
    out = {}
    for key, value in head.items():
        key = key.replace("layers.", "head.")
        if conv1d and key.endswith(("0.weight", "3.weight")):
            value = value.unsqueeze(-1)
        out[key] = value
    return out


def _lightning(state: dict) -> dict:
    """The wrapper PyTorch Lightning writes around a state dict."""
    return {"epoch": 49, "global_step": 1000, "pytorch-lightning_version": "1.5.9",
            "state_dict": state, "callbacks": {"ModelCheckpoint": {"best_model_score":
                                                               torch.tensor(0.5)}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 2e-5}]}],
            "lr_schedulers": [{"last_epoch": 49}], "hparams_name": "kwargs",
            "hyper_parameters": {"img_encoder": "resnet_50", "emb_dim": 128,
                                 "num_prototypes": 500, "freeze_bert": False}}


def _part(state, prefix):
    return OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))


@pytest.fixture(scope="module")
def mgca_resnet(tmp_path_factory):
    """A released-layout MGCA ResNet-50 .ckpt and the values our model must end up with."""
    from transformers import BertTokenizer
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    ours = _random(_mgca(tokenizer))
    rgb = _random(ResNetImageEncoder(depth=50, in_channels=3))  # MGCA feeds RGB
    state = OrderedDict(("img_encoder_q.model." + k[len("resnet."):], v) for k, v in rgb.items())
    state.update({"img_encoder_q.global_embed." + k: v for k, v in
                  _embed(_part(ours, "image_global_proj."), False).items()})
    state.update({"img_encoder_q.local_embed." + k: v for k, v in
                  _embed(_part(ours, "image_local_proj."), True).items()})
    # MGCA's text model is BLIP's BertModel: no token-type embedding, a position_ids
    # buffer, and (add_cross_attention) an unused crossattention block in every layer
    ours["text_encoder.model.embeddings.token_type_embeddings.weight"].zero_()
    state.update({"text_encoder_q.model." + k: v for k, v in
                  _part(ours, "text_encoder.model.").items() if "token_type" not in k})
    state["text_encoder_q.model.embeddings.position_ids"] = torch.arange(64)[None]
    for layer in range(6):
        for name, shape in (("self.query", (32, 32)), ("self.key", (32, 32)),
                            ("self.value", (32, 32)), ("output.dense", (32, 32)),
                            ("output.LayerNorm", (32,))):
            prefix = f"text_encoder_q.model.encoder.layer.{layer}.crossattention.{name}"
            state[prefix + ".weight"] = torch.randn(shape)
            state[prefix + ".bias"] = torch.randn(shape[0])
    state.update({"text_encoder_q.global_embed." + k: v for k, v in
                  _embed(_part(ours, "report_global_proj."), False).items()})
    state.update({"text_encoder_q.local_embed." + k: v for k, v in
                  _embed(_part(ours, "word_local_proj."), True).items()})
    state["prototype_layer.weight"] = ours["prototype_loss.prototypes.weight"]
    for name in ("patch_local_atten_layer", "word_local_atten_layer"):
        state[f"{name}.in_proj_weight"] = torch.randn(384, 128)
        state[f"{name}.in_proj_bias"] = torch.randn(384)
        state[f"{name}.out_proj.weight"] = torch.randn(128, 128)
        state[f"{name}.out_proj.bias"] = torch.randn(128)
    assert tuple(state["img_encoder_q.local_embed.head.0.weight"].shape) == (2048, 1024, 1)
    assert tuple(state["prototype_layer.weight"].shape) == (500, 128)
    path = tmp_path_factory.mktemp("mgca") / "resnet_50.ckpt"
    torch.save(_lightning(state), path)
    return dict(path=path, ours=ours, rgb=rgb, tokenizer=tokenizer)


def _check_encoder(encoder_state, source):
    for key, value in encoder_state.items():
        expected = source["rgb"][key]
        if key == "resnet.conv1.weight":  # RGB summed for the one-channel X-ray input
            expected = expected.sum(dim=1, keepdim=True)
        assert torch.equal(value, expected), key


def test_mgca_resnet50_checkpoint_loads_into_interlace_mgca(mgca_resnet):
    model = _mgca(mgca_resnet["tokenizer"])
    report = load_mgca_weights(model, mgca_resnet["path"])
    assert report.counts() == dict(loaded=468, missing=1, unexpected=8, shape_mismatched=0,
                                   dropped=61)
    assert report.missing == ["instance_loss.logit_scale"]
    assert report.channel_summed == ["image_encoder.resnet.conv1.weight"]
    assert sorted({k.split(".")[0] for k in report.unexpected}) == [
        "patch_local_atten_layer", "word_local_atten_layer"]
    _check_encoder(_part(model.state_dict(), "image_encoder."), mgca_resnet)
    for key, value in model.state_dict().items():
        if not key.startswith(("image_encoder.", "instance_loss.")):
            assert torch.equal(value, mgca_resnet["ours"][key]), key


def test_image_encoder_alone_loads_for_the_linear_probe(mgca_resnet):
    model = _mgca(mgca_resnet["tokenizer"])
    text_before = model.text_encoder.model.embeddings.word_embeddings.weight.clone()
    report = load_mgca_weights(model, mgca_resnet["path"], image_encoder_only=True,
                               strict=True)
    assert report.counts() == dict(loaded=318, missing=0, unexpected=0, shape_mismatched=0,
                                   dropped=0)
    _check_encoder(_part(model.state_dict(), "image_encoder."), mgca_resnet)
    assert torch.equal(model.text_encoder.model.embeddings.word_embeddings.weight, text_before)
    features = model.eval().extract_image_features(torch.randn(2, 1, 64, 64))
    assert tuple(features.shape) == (2, 2048)


def test_linear_probe_tool_reads_the_released_checkpoint(mgca_resnet):
    from mmengine.config import Config

    from interlace.tools.linear_probe import build_model
    cfg = Config(dict(default_scope="interlace", model=dict(
        type="MGCA", image_encoder=dict(type="ResNetImageEncoder", depth=50),
        text_encoder=dict(type="ReportTextEncoder", config=BERT6, num_layers=6, vocab=VOCAB),
        prototype_loss=dict(type="PrototypeAlignmentLoss", num_prototypes=500))))
    model, info = build_model(cfg, str(mgca_resnet["path"]), random_init=False)
    assert (info["loaded"], info["image_encoder_missing"], info["unexpected"]) == (318, 0, 0)
    _check_encoder(_part(model.state_dict(), "image_encoder."), mgca_resnet)


def test_segmentation_model_takes_the_released_checkpoint_as_pretrained(mgca_resnet):
    model = CxrSegmenter(image_encoder=dict(type="ResNetImageEncoder", depth=50),
                         pretrained=str(mgca_resnet["path"]))
    model.init_weights()
    _check_encoder(model.image_encoder.state_dict(), mgca_resnet)


def test_converted_checkpoint_is_an_interlace_checkpoint_for_the_probe(mgca_resnet, tmp_path):
    from interlace.core.engine.weight_conversion import convert_checkpoint_file
    summary = convert_checkpoint_file(
        mgca_resnet["path"], tmp_path / "mgca_interlace.pth", "mgca",
        model=_mgca(mgca_resnet["tokenizer"]))
    assert summary["counts"] == dict(loaded=468, missing=1, unexpected=8, shape_mismatched=0,
                                     dropped=61)
    model = _mgca(mgca_resnet["tokenizer"])  # what tools/analysis_tools/linear_probe.py does
    report = load_weights(model, tmp_path / "mgca_interlace.pth", strict=False)
    assert not report.missing and not report.unexpected
    _check_encoder(_part(model.state_dict(), "image_encoder."), mgca_resnet)


def test_mgca_vit_b16_checkpoint_loads_into_the_vit_encoder():
    rgb_encoder = ViTImageEncoder(in_channels=3)  # ViT-B/16 at 224 px, as MGCA's
    ours = _random(rgb_encoder)
    del rgb_encoder
    cls_row = torch.randn(1, 1, 768)
    patch_rows = ours["vit.patch_embedding.position_embeddings"]
    timm = OrderedDict(cls_token=ours["vit.cls_token"] - cls_row,
                       pos_embed=torch.cat([cls_row, patch_rows], 1))
    timm["patch_embed.proj.weight"] = ours["vit.patch_embedding.patch_embeddings.weight"]
    timm["patch_embed.proj.bias"] = ours["vit.patch_embedding.patch_embeddings.bias"]
    for key, value in ours.items():
        if key.startswith("vit.blocks."):
            key = key[len("vit."):].replace("attn.out_proj.", "attn.proj.")
            key = key.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2.")
            timm[key] = value
    timm["norm.weight"], timm["norm.bias"] = ours["vit.norm.weight"], ours["vit.norm.bias"]
    assert tuple(timm["pos_embed"].shape) == (1, 197, 768) and len(timm) == 150
    state = {"img_encoder_q.model." + k: v for k, v in timm.items()}
    encoder = ViTImageEncoder(in_channels=1)
    report = load_mgca_weights(encoder, _lightning(state), image_encoder_only=True, strict=True)
    assert report.counts() == dict(loaded=150, missing=0, unexpected=0, shape_mismatched=0,
                                   dropped=0)
    for key, value in encoder.state_dict().items():
        expected = ours[key]
        if key.endswith("patch_embeddings.weight"):
            expected = expected.sum(dim=1, keepdim=True)
        if key == "vit.cls_token":  # cls_token + pos_embed's CLS row, rounded once
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        else:
            assert torch.equal(value, expected), key


def test_a_checkpoint_of_another_layout_is_refused():
    with pytest.raises(ValueError, match="not a released MGCA checkpoint"):
        load_mgca_weights(ResNetImageEncoder(depth=18), {"state_dict": {"x.weight": torch.ones(1)}})


# --- Hugging Face BERT folders ----------------------------------------------------------------

def _bert_folder(folder, model, weights: str = "model.safetensors", config_edit=None):
    """A Bio_ClinicalBERT-style folder: config.json, vocab.txt and the weights file."""
    model.save_pretrained(folder)
    if weights == "pytorch_model.bin":  # as Bio_ClinicalBERT ships (torch.save of the state)
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    if config_edit:
        config = json.loads((folder / "config.json").read_text())
        config.update(config_edit)
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def _bert_config():
    values = {k: v for k, v in BERT6.items() if k != "model_type"}
    return BertConfig(**values)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_bio_clinicalbert_folder_is_the_text_encoder(tmp_path, weights):
    torch.manual_seed(0)
    bert = BertModel(_bert_config(), add_pooling_layer=False)
    folder = _bert_folder(tmp_path / "Bio_ClinicalBERT", bert, weights)
    encoder = ReportTextEncoder(model_path=str(folder), num_layers=2)
    source = bert.state_dict()
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert len(encoder.model.encoder.layer) == 2
    out = encoder(["small left pleural effusion."])
    assert out.words[0] == ["small", "left", "pleural", "effusion", "."]


def test_cxr_bert_folder_with_its_own_model_type_loads_its_bert_trunk(tmp_path):
    torch.manual_seed(0)
    masked_lm = BertForMaskedLM(_bert_config())  # keys bert.* and cls.*, as CXR-BERT's
    folder = _bert_folder(tmp_path / "CXR-BERT-specialized", masked_lm, config_edit=dict(
        model_type="cxr-bert", architectures=["CXRBertModel"], projection_size=128,
        auto_map={"AutoConfig": "configuration_cxrbert.CXRBertConfig",
                  "AutoModel": "modeling_cxrbert.CXRBertModel"}))
    encoder = ReportTextEncoder(model_path=str(folder), num_layers=6)
    source = masked_lm.bert.state_dict()
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert encoder(["no effusion."]).words[0] == ["no", "effusion", "."]
