"""TemporalFusionTransformer: masked tokens are ignored exactly; no NaN when all masked."""
import torch

from interlace.core.temporal import TemporalFusionTransformer


def _model(**kwargs):
    return TemporalFusionTransformer(16, num_layers=2, num_heads=4, **kwargs).eval()


def test_output_is_one_vector_per_sequence():
    out = _model()(torch.randn(5, 7, 16))
    assert out.shape == (5, 16)


def test_masked_tokens_do_not_change_the_output_exactly():
    model = _model()
    tokens = torch.randn(3, 6, 16)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 2] = True
    mask[1, 4] = True
    changed = tokens.clone()
    changed[:, 2] = torch.randn(3, 16) * 100
    changed[1, 4] = -50.0
    assert torch.equal(model(tokens, mask), model(changed, mask))
    # The same change to an unmasked token does change the output (the test can fail).
    assert not torch.allclose(model(tokens), model(changed))


def test_fully_masked_sequence_gives_a_finite_output():
    model = _model()
    out = model(torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool))
    assert torch.isfinite(out).all()
    # With nothing to attend to but itself, every sequence gets the same (extra-token) output.
    assert torch.allclose(out[0], out[1])


def test_chunked_run_equals_one_run():
    tokens, mask = torch.randn(10, 5, 16), torch.rand(10, 5) < 0.3
    whole = _model()
    chunked = _model(chunk_size=3)
    chunked.load_state_dict(whole.state_dict())
    assert torch.allclose(whole(tokens, mask), chunked(tokens, mask), atol=1e-6)


def test_checkpointed_chunks_give_the_same_gradients():
    tokens = torch.randn(6, 5, 16)
    plain = _model(chunk_size=2).train()
    ckpt = _model(chunk_size=2, checkpoint_chunks=True).train()
    ckpt.load_state_dict(plain.state_dict())
    plain(tokens).square().sum().backward()
    ckpt(tokens).square().sum().backward()
    assert torch.allclose(plain.extra_token.grad, ckpt.extra_token.grad, atol=1e-5)
