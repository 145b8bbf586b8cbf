"""Genie's pieces checked directly: VQ straight-through and codebook use, the latent action
bottleneck, and the dynamics' masking and causality."""
import torch

from wmtool.models.genie import LatentActionModel, MaskGITDynamics, Tokenizer
from wmtool.nets.fsq import ScalarQuantizer, levels_for
from wmtool.nets.vq import VectorQuantizer


def test_vq_passes_gradients_straight_through_and_trains_its_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4)
    z = torch.randn(32, 4, requires_grad=True)
    quantised, index, losses = vq(z)
    assert torch.allclose(quantised, vq.lookup(index))  # forward: the nearest codes
    (quantised * torch.arange(4.0)).sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, torch.arange(4.0).expand(32, 4))  # backward: identity
    before = vq.codebook.weight.clone()
    losses["codebook"].backward()
    moved = vq.codebook.weight.grad.abs().sum(1) > 0
    assert set(index.tolist()) == set(moved.nonzero().flatten().tolist())
    assert torch.equal(before, vq.codebook.weight)


def test_unused_codes_restart_on_recent_encodings():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0]] + [[50.0, 50.0]] * 7))
    z = torch.randn(64, 2)
    _, index, _ = vq(z)
    assert set(index.tolist()) == {0}
    assert vq.restart() == 7
    _, index, _ = vq(z)
    assert len(set(index.tolist())) > 1  # the codebook is in use again
    assert abs(float(VectorQuantizer.perplexity(torch.arange(8), 8)) - 8.0) < 1e-4


def test_latent_action_model_sees_the_next_frame_only_through_its_bottleneck():
    torch.manual_seed(0)
    lam = LatentActionModel(3, actions=1, depth=4)
    now = torch.rand(2, 3, 64, 64)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    pred_a = lam.predict(now, lam.infer(now, a)[0])
    pred_b = lam.predict(now, lam.infer(now, b)[0])
    assert pred_a.shape == (2, 3, 64, 64)
    assert torch.equal(pred_a, pred_b)  # one code: nothing of the next frame gets through
    lam8 = LatentActionModel(3, actions=8, depth=4)
    _, index, _ = lam8.infer(now, a)
    assert index.shape == (2,) and int(index.max()) < 8


def test_fsq_codes_round_trip_and_gradients_pass_through_the_rounding():
    assert levels_for(8) == [2, 2, 2] and levels_for(6) == [2, 3] and levels_for(1) == [1]
    for codes in (1, 6, 8, 7):
        fsq = ScalarQuantizer(codes)
        vectors = fsq.lookup(torch.arange(codes))
        assert len(torch.unique(vectors, dim=0)) == codes and vectors.abs().max() <= 1
        _, index, _ = fsq(torch.atanh(vectors * 0.999))  # each code's own vector maps back
        assert torch.equal(index, torch.arange(codes))
    fsq = ScalarQuantizer(8)
    z = torch.randn(32, 3, requires_grad=True)
    quantised, index, _ = fsq(z)
    assert torch.equal(quantised, fsq.lookup(index))  # forward: exactly the code
    quantised.sum().backward()
    assert torch.allclose(z.grad, 1 - torch.tanh(z.detach()) ** 2)  # backward: through tanh


def test_tokenizer_round_trip_shapes():
    tok = Tokenizer(3, codes=32, dim=8, depth=4, beta=0.25)
    pixels = torch.rand(5, 3, 64, 64)
    _, tokens, _ = tok.encode(pixels)
    assert tokens.shape == (5, 64) and int(tokens.max()) < 32
    assert tok.decode_tokens(tokens).shape == (5, 3, 64, 64)


def test_dynamics_is_causal_in_time_and_learns_only_hidden_tokens():
    torch.manual_seed(0)
    dyn = MaskGITDynamics(codes=16, actions=4, tokens=4, frames=3, dim=16, layers=2, heads=2)
    tokens = torch.randint(0, 16, (2, 3, 4))
    actions = torch.randint(0, 4, (2, 3))
    out = dyn(tokens, actions)
    later = tokens.clone()
    later[:, 2] = (later[:, 2] + 1) % 16  # change only the last frame
    assert torch.allclose(dyn(later, actions)[:, :2], out[:, :2], atol=1e-5)
    assert not torch.allclose(dyn(later, actions)[:, 2], out[:, 2])
    other = actions.clone()
    other[:, 1] = (other[:, 1] + 1) % 4  # the action into frame 1 changes frame 1 on
    assert not torch.allclose(dyn(tokens, other)[:, 1], out[:, 1])
    loss, _ = dyn.loss(tokens, actions, torch.ones(2, 3))
    assert torch.isfinite(loss)
    frame = dyn.generate(tokens[:, :2], actions, steps=4)
    assert frame.shape == (2, 4) and int(frame.max()) < 16  # no mask id left
