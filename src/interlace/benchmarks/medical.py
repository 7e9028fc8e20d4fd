"""MGCA benchmarks (`tools/analysis_tools/benchmark.py medical`): training-step throughput and
memory, and the linear probe's feature extraction.

Full scale: batch 16, 224 px single-channel images, a 6-layer BERT (hidden 768, 12
heads, randomly initialised from a ``BertConfig``: nothing is downloaded) with a
character-level WordPiece vocabulary, MGCA with all three losses (500 prototypes,
past the prototype-freezing epoch). ``ours`` is one training step (forward, backward,
AdamW step) or, for the probe, one no-grad batch of ``extract_image_features``. The
harness reports seconds per call; images/s = batch / that time (the batch is in
``Prepared.notes``). Smoke scale: ResNet-18 / a 2-layer ViT, a 2-layer BERT of width
32, 32 px images, batch 4.
"""
from __future__ import annotations

from typing import Callable

import torch

from .common import BenchCase, Prepared

_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
_PUNCTUATION = ".,;:()-/"
_REPORTS = [
    "there is a right lower lobe opacity. no pleural effusion or pneumothorax.",
    "moderate left pleural effusion. the heart is enlarged. support device in place.",
    "the lungs are clear. no pleural effusion or pneumothorax. normal heart size.",
    "endotracheal tube terminates above the carina. mild cardiomegaly.",
]


def _sizes(scale: str) -> dict:
    if scale == "smoke":
        return dict(batch=4, image=32, bert=dict(hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64),
                    resnet_depth=18, vit=dict(img_size=32, patch_size=16, hidden_size=32,
                                              num_layers=2, num_heads=2),
                    prototypes=16, hidden_dims=64)
    return dict(batch=16, image=224, bert=dict(hidden_size=768, num_hidden_layers=6,
                                               num_attention_heads=12, intermediate_size=3072),
                resnet_depth=50, vit=dict(img_size=224, patch_size=16, hidden_size=768,
                                          num_layers=12, num_heads=12),
                prototypes=500, hidden_dims=2048)


def _model(encoder: str, scale: str):
    import interlace.domains.medical.models  # noqa: F401  registers MGCA and its parts
    from interlace.domains.medical.models import MGCA

    sizes = _sizes(scale)
    bert = dict(model_type="bert", vocab_size=128, max_position_embeddings=128, **sizes["bert"])
    if encoder == "resnet":
        image_encoder = dict(type="ResNetImageEncoder", depth=sizes["resnet_depth"],
                             in_channels=1)
    else:
        image_encoder = dict(type="ViTImageEncoder", in_channels=1, **sizes["vit"])
    text_encoder = dict(type="ReportTextEncoder", config=bert, num_layers=None, max_length=112,
                        vocab=list(_LETTERS) + list(_PUNCTUATION)
                        + ["##" + c for c in _LETTERS])
    return MGCA(image_encoder=image_encoder, text_encoder=text_encoder, embed_dims=128,
                hidden_dims=sizes["hidden_dims"],
                prototype_loss=dict(type="PrototypeAlignmentLoss",
                                    num_prototypes=sizes["prototypes"]))


def _images(scale: str) -> torch.Tensor:
    sizes = _sizes(scale)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(sizes["batch"], 1, sizes["image"], sizes["image"], generator=generator)


def _train_step_case(encoder: str) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        torch.manual_seed(0)
        model = _model(encoder, scale).train()
        model.set_epoch(1)  # past the prototype-freezing first epoch
        images = _images(scale)
        reports = [_REPORTS[i % len(_REPORTS)] for i in range(images.shape[0])]
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.05)

        def step() -> float:
            optimizer.zero_grad(set_to_none=True)
            losses = model.loss(images, reports)
            loss = sum(losses.values())
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        params = sum(p.numel() for p in model.parameters())
        return Prepared(ours=step, notes=(
            f"images/s = {images.shape[0]} / time; batch {images.shape[0]}, "
            f"{images.shape[-1]} px, {params / 1e6:.1f} M parameters"))
    return setup


def _extract_setup(scale: str) -> Prepared:
    torch.manual_seed(0)
    model = _model("resnet", scale).eval()
    images = _images(scale)

    def extract() -> torch.Tensor:
        with torch.no_grad():
            return model.extract_image_features(images)

    return Prepared(ours=extract, notes=(
        f"images/s = {images.shape[0]} / time; batch {images.shape[0]}, "
        f"{images.shape[-1]} px, no_grad, global features"))


CASES = [
    BenchCase("mgca_train_step_resnet50",
              "MGCA training step (ResNet-50 + 6-layer BERT-768, ITA+CTA+CPA, AdamW), "
              "batch 16, 224 px", _train_step_case("resnet"), repeats=2, tags=["medical"]),
    BenchCase("mgca_train_step_vitb16",
              "MGCA training step (ViT-B/16 + 6-layer BERT-768, ITA+CTA+CPA, AdamW), "
              "batch 16, 224 px", _train_step_case("vit"), repeats=2, tags=["medical"]),
    BenchCase("linear_probe_extract_resnet50",
              "linear-probe feature extraction, ResNet-50, batch 16, 224 px, no_grad",
              _extract_setup, repeats=3, tags=["medical"]),
]
