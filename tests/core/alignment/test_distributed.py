"""Two gloo processes: gathered-negative InfoNCE, local matching and distributed Sinkhorn
equal the single-process results on the global batch (values and local gradients)."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from interlace.core.alignment import (InstanceContrastiveLoss, LocalMatchingLoss,
                                      gather_with_grad, rank_offset, sinkhorn_knopp)

WORLD = 2
LOCAL_BATCH = 3


def _global_batch():
    generator = torch.Generator().manual_seed(1234)
    a = torch.randn(WORLD * LOCAL_BATCH, 5, generator=generator, dtype=torch.float64)
    b = torch.randn(WORLD * LOCAL_BATCH, 5, generator=generator, dtype=torch.float64)
    scores = torch.nn.functional.normalize(
        torch.randn(WORLD * LOCAL_BATCH, 4, generator=generator, dtype=torch.float64), dim=1)
    return a, b, scores


def _check_local_matching(rank: int, granularity: str) -> None:
    """Rank 1's reports are one word shorter (its batch padded less): gathering pads them."""
    generator = torch.Generator().manual_seed(99)
    words = torch.randn(WORLD * LOCAL_BATCH, 4, 5, generator=generator, dtype=torch.float64)
    patches = torch.randn(WORLD * LOCAL_BATCH, 6, 5, generator=generator, dtype=torch.float64)
    weights = torch.rand(WORLD * LOCAL_BATCH, 4, generator=generator, dtype=torch.float64)
    mask = torch.zeros(WORLD * LOCAL_BATCH, 4, dtype=torch.bool)
    mask[LOCAL_BATCH:, 3] = True
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    length = 4 if rank == 0 else 3

    words_ref, patches_ref = words.clone().requires_grad_(), patches.clone().requires_grad_()
    ref = LocalMatchingLoss(0.5, 0.2, granularity=granularity, gather_distributed=False)(
        words_ref, mask, weights, patches_ref)
    ref.loss.backward()

    words_loc = words[rows, :length].clone().requires_grad_()
    patches_loc = patches[rows].clone().requires_grad_()
    out = LocalMatchingLoss(0.5, 0.2, granularity=granularity)(
        words_loc, mask[rows, :length], weights[rows, :length], patches_loc)
    out.loss.backward()
    mean_loss = out.loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.testing.assert_close(mean_loss / WORLD, ref.loss.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(words_loc.grad, WORLD * words_ref.grad[rows, :length],
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(patches_loc.grad, WORLD * patches_ref.grad[rows], atol=1e-6,
                               rtol=0)
    # Scores and attention are this rank's block of the global ones.
    torch.testing.assert_close(out.scores, ref.scores[rows, rows], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.word_to_patch_attention,
                               ref.word_to_patch_attention[rows, :length], atol=1e-6, rtol=0)
    # Without gathering, each rank would contrast 3 reports, not 6: a different loss.
    alone = LocalMatchingLoss(0.5, 0.2, granularity=granularity, gather_distributed=False)(
        words_loc.detach(), mask[rows, :length], weights[rows, :length], patches_loc.detach())
    assert abs(float(alone.loss) - float(out.loss)) > 1e-3


def _worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        a, b, scores = _global_batch()
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        assert rank_offset(LOCAL_BATCH) == rank * LOCAL_BATCH

        # Reference: the whole global batch in this process, no communication.
        a_ref, b_ref = a.clone().requires_grad_(), b.clone().requires_grad_()
        ref_loss = InstanceContrastiveLoss(0.1, gather_distributed=False)(a_ref, b_ref)
        ref_loss.backward()

        a_loc = a[rows].clone().requires_grad_()
        b_loc = b[rows].clone().requires_grad_()
        loss = InstanceContrastiveLoss(0.1, gather_distributed=True)(a_loc, b_loc)
        loss.backward()
        # Documented scale: mean over ranks of the local losses == global loss; local
        # gradients == world_size * gradient of the global loss (DDP's average removes it).
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        torch.testing.assert_close(mean_loss / WORLD, ref_loss.detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(a_loc.grad, WORLD * a_ref.grad[rows], atol=1e-6, rtol=0)
        torch.testing.assert_close(b_loc.grad, WORLD * b_ref.grad[rows], atol=1e-6, rtol=0)

        for granularity in ("report", "word"):
            _check_local_matching(rank, granularity)

        # gather_with_grad itself: rank order and the summed backward.
        x = torch.full((2, 1), float(rank), dtype=torch.float64, requires_grad=True)
        gathered = gather_with_grad(x)
        assert gathered.squeeze(1).tolist() == [0.0, 0.0, 1.0, 1.0]
        (gathered * torch.arange(1.0, 5.0, dtype=torch.float64)[:, None]).sum().backward()
        # Every rank's loss weights row j by (j + 1); the summed gradient is WORLD * (j + 1).
        assert x.grad.squeeze(1).tolist() == [WORLD * (2 * rank + 1.0), WORLD * (2 * rank + 2.0)]

        for iterations in (1, 3):
            ref_codes = sinkhorn_knopp(scores, 0.05, iterations, distributed=False)
            codes = sinkhorn_knopp(scores[rows], 0.05, iterations, distributed=True)
            torch.testing.assert_close(codes, ref_codes[rows], atol=1e-6, rtol=0)
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_gathered_losses_and_sinkhorn_match_single_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(str(tmp_path / "init"),), nprocs=WORLD, join=True)


def test_gather_with_grad_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x
    assert rank_offset(3) == 0
