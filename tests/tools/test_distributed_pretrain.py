"""MGCA pre-training under torchrun gathers negatives across ranks.

Two gloo CPU processes each get half of a global batch; the mean of their losses (what
mmengine logs) and their DDP-averaged gradients must equal the single-process loss and
gradients on the concatenated batch. The model runs in eval mode so that BatchNorm uses its
running statistics: in train mode the projection heads' BN normalises each rank's half on
its own (no SyncBN), which legitimately changes the numbers.

This file is also the worker: ``torchrun --nproc_per_node 2 <this file> OUT_DIR``.
"""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import torch

GLOBAL_BATCH, IMAGE_SIZE = 8, 32
REPORTS = ["left pneumothorax is large.", "lungs are clear. heart size is normal.",
           "small right pleural effusion.", "cardiac silhouette is enlarged."]
VOCAB = ["no", "small", "large", "left", "right", "pneumo", "##thor", "##ax", "effusion",
         "lungs", "are", "clear", "heart", "size", "is", "normal", "enlarged", "cardiac",
         "silhouette", "pleural", ".", ","]


def _model():
    """A tiny MGCA, identical on every rank (seeded), with all three losses and the
    optional cross-sample local matching."""
    from interlace.domains.medical.models import MGCA

    torch.manual_seed(0)
    bert = dict(model_type="bert", vocab_size=32, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = MGCA(image_encoder=dict(type="ResNetImageEncoder", depth=18),
                 text_encoder=dict(type="ReportTextEncoder", config=bert, num_layers=2,
                                   vocab=VOCAB),
                 embed_dims=16, hidden_dims=32,
                 prototype_loss=dict(type="PrototypeAlignmentLoss", num_prototypes=8),
                 loss_weights=dict(local_matching=0.5))
    # BN running statistics away from (0, 1) so eval mode is not a trivial identity.
    generator = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    model.set_epoch(1)  # prototypes trainable, so their gradient is compared too
    return model.eval()


def _global_batch() -> tuple[torch.Tensor, list[dict]]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(GLOBAL_BATCH, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return images, [dict(report=REPORTS[i % len(REPORTS)]) for i in range(GLOBAL_BATCH)]


def _losses_and_grads(model, images, samples) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    losses = model(images, samples, mode="loss")
    sum(losses.values()).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()
             if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


def _worker(out_dir: Path) -> None:
    """One rank: its half of the global batch, losses averaged and grads DDP-averaged."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    images, samples = _global_batch()
    local = GLOBAL_BATCH // world
    rows = slice(rank * local, (rank + 1) * local)
    losses, grads = _losses_and_grads(_model(), images[rows], samples[rows])
    for grad in grads.values():  # what DDP does to the parameter gradients
        dist.all_reduce(grad)
        grad /= world
    mean_losses = {}
    for key, value in losses.items():  # what mmengine logs: the mean over ranks
        tensor = torch.tensor(value, dtype=torch.float64)
        dist.all_reduce(tensor)
        mean_losses[key] = float(tensor) / world
    if rank == 0:
        torch.save(dict(losses=mean_losses, grads=grads), out_dir / "distributed.pt")
    (out_dir / f"rank{rank}.json").write_text(json.dumps(dict(local_losses=losses)))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.dist
def test_two_ranks_match_the_single_process_loss_and_gradients(tmp_path):
    from tests.fixtures.tools import run_tool

    proc = run_tool("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    str(_free_port()), __file__, tmp_path, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = torch.load(tmp_path / "distributed.pt")
    reference_losses, reference_grads = _losses_and_grads(_model(), *_global_batch())
    assert set(result["losses"]) == {"loss_instance", "loss_token", "loss_prototype",
                                     "loss_local_matching"}
    for key, value in reference_losses.items():
        assert result["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # Without gathering, each rank's instance loss would see only 3 negatives, not 7, and be
    # smaller; the ranks' own losses differ from each other, so this is not trivially equal.
    local = [json.loads((tmp_path / f"rank{r}.json").read_text())["local_losses"]
             for r in (0, 1)]
    for key in ("loss_instance", "loss_local_matching"):
        assert local[0][key] != pytest.approx(local[1][key], rel=1e-4), key
    assert reference_grads.keys() == result["grads"].keys()
    for name, grad in reference_grads.items():
        torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")
    # the image encoder and the text encoder both receive gradient in the comparison
    assert reference_grads["image_encoder.resnet.conv1.weight"].abs().sum() > 0
    assert reference_grads["text_encoder.model.embeddings.word_embeddings.weight"].abs().sum() > 0


if __name__ == "__main__":  # run_tool puts the repository on PYTHONPATH, for `tests.*`
    _worker(Path(sys.argv[1]))
