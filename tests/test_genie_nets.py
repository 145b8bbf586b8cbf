"""Genie's pieces checked directly: VQ straight-through and codebook use, the latent action
bottleneck, and the dynamics' masking and causality."""
import math

import pytest
import torch

from wmtool.models.genie import (
    LatentActionModel,
    MaskGITDynamics,
    Tokenizer,
    cosine_mask_ratio,
)
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


def test_codes_used_in_any_batch_since_the_last_restart_stay():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 1)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0], [10.0], [20.0], [30.0]]))
    vq(torch.tensor([[0.1], [9.9]]))   # codes 0 and 1
    vq(torch.tensor([[19.0], [0.2]]))  # codes 2 and 0
    assert vq.restart() == 1  # only code 3 was never used
    assert vq.codebook.weight[:3].flatten().tolist() == [0.0, 10.0, 20.0]


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


# -- the three phases' losses written out (make mutate: docs/mutation.md) --------------------
def spread_codebook(tokenizer, pixels):
    """Codes on some of the encodings of `pixels` (as restarts put them), so that the nearest
    code depends on the input."""
    with torch.no_grad():
        z = tokenizer.encoder(pixels).permute(0, 2, 3, 1).reshape(-1, tokenizer.vq.dim)
        pick = torch.randperm(len(z))[:tokenizer.vq.codes]
        tokenizer.vq.codebook.weight.copy_(z[pick] + 0.1 * z.std() * torch.randn_like(z[pick]))


def test_tokenizer_loss_is_reconstruction_plus_codebook_plus_beta_commitment():
    """VQ-VAE: mean squared reconstruction error of the decoded nearest codes (straight-through
    to the encoder), ||sg(z) - e||^2 for the codebook, beta ||z - sg(e)||^2 for the encoder."""
    torch.manual_seed(0)
    tok = Tokenizer(3, codes=16, dim=4, depth=4, beta=0.25)
    pixels = torch.rand(3, 3, 64, 64)
    spread_codebook(tok, pixels)
    losses, index = tok.loss(pixels)
    z = tok.encoder(pixels).permute(0, 2, 3, 1)
    book = tok.vq.codebook.weight
    nearest = ((z.detach()[..., None, :] - book) ** 2).sum(-1).argmin(-1)
    assert torch.equal(index, nearest.flatten(1)) and len(index.unique()) > 1
    e = book[nearest]
    recon = tok.decoder((z + (e - z).detach()).permute(0, 3, 1, 2))
    want = {"rec": ((recon - pixels) ** 2).mean(), "codebook": ((e - z.detach()) ** 2).mean(),
            "commit": 0.25 * ((z - e.detach()) ** 2).mean()}
    assert set(losses) == set(want)
    for name in want:
        assert losses[name].item() == pytest.approx(want[name].item(), rel=1e-5), name
    # (the codebook's gradient from the reconstruction is left out: here the decoder's input
    # e + (z - sg z) passes it to the codes, where VQ-VAE's z + sg(e - z) would not)
    for name in want:
        params = list(tok.parameters()) if name != "rec" else \
            [*tok.encoder.parameters(), *tok.decoder.parameters()]
        for g, w in zip(torch.autograd.grad(losses[name], params, allow_unused=True,
                                            retain_graph=True),
                        torch.autograd.grad(want[name], params, allow_unused=True,
                                            retain_graph=True)):
            if w is None:
                assert g is None or g.abs().max() == 0, name
            else:
                assert g is not None and torch.allclose(g, w, atol=1e-6, rtol=1e-4), name


def test_latent_action_loss_is_the_next_frames_squared_error_per_pair():
    torch.manual_seed(0)
    lam = LatentActionModel(3, actions=8, depth=4)
    now, after = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    per_frame, losses, index = lam.loss(now, after)
    action, want_index, _ = lam.infer(now, after)
    want = ((lam.predict(now, action) - after) ** 2).mean((1, 2, 3))
    assert per_frame.shape == (3,) and torch.allclose(per_frame, want, atol=1e-6)
    assert torch.equal(index, want_index) and losses == {}


def test_cosine_mask_schedule():
    u = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    want = torch.tensor([1.0, math.cos(math.pi / 6), math.cos(math.pi / 4), 0.0])
    assert torch.allclose(cosine_mask_ratio(u), want, atol=1e-6)


def test_dynamics_loss_is_the_cross_entropy_of_hidden_valid_tokens():
    """MaskGIT: each later frame hides the share cos(pi u / 2) (u uniform) of its tokens; the
    loss is the mean cross-entropy over hidden tokens of valid frames, never the first frame."""
    torch.manual_seed(0)
    dyn = MaskGITDynamics(codes=16, actions=4, tokens=4, frames=3, dim=16, layers=1, heads=2)
    with torch.no_grad():
        dyn.head.bias[1] = 20.0  # predicts code 1: right for about half the tokens below
    tokens = torch.randint(0, 2, (4, 3, 4))
    actions = torch.randint(0, 4, (4, 3))
    valid = torch.ones(4, 3)
    valid[1, 2] = 0.0
    torch.manual_seed(3)
    ce, accuracy = dyn.loss(tokens, actions, valid)
    torch.manual_seed(3)
    ratio = torch.cos(0.5 * math.pi * torch.rand(4, 3, 1))
    hidden = torch.rand(4, 3, 4) < ratio
    hidden[:, 0] = False
    logits = dyn(torch.where(hidden, torch.full_like(tokens, 16), tokens), actions)
    weight = (hidden & valid[..., None].bool()).float()
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, 16), tokens.reshape(-1),
                                                  reduction="none").view(4, 3, 4)
    assert weight.sum() > 2
    assert ce.item() == pytest.approx(((per_token * weight).sum() / weight.sum()).item(),
                                      rel=1e-5)
    hits = ((logits.argmax(-1) == tokens).float() * weight).sum() / weight.sum()
    assert accuracy.item() == pytest.approx(hits.item(), rel=1e-5) and 0 < hits < 1
    # the share hidden follows the schedule: E[cos(pi u / 2)] = 2 / pi of the later frames
    big = MaskGITDynamics(codes=4, actions=1, tokens=64, frames=2, dim=8, layers=1, heads=1)
    shares, forward = [], big.forward
    big.forward = lambda tokens, actions: (shares.append((tokens[:, 1] == 4).float()),
                                           forward(tokens, actions))[1]
    for seed in range(40):
        torch.manual_seed(seed)
        big.loss(torch.randint(0, 4, (16, 2, 64)), torch.zeros(16, 2, dtype=torch.long),
                 torch.ones(16, 2))
    assert torch.cat(shares).mean().item() == pytest.approx(2 / math.pi, abs=0.02)


def genie_model():
    from wmtool import config, spaces
    from wmtool.models.genie import GenieModel

    cfg = config.compose(algo="genie", size="debug", sets=["genie.restart_every=2"])
    torch.manual_seed(0)
    model = GenieModel({"image": spaces.image(64, 64, 3)}, None, cfg)
    spread_codebook(model.tokenizer, model.frames(genie_batch()).flatten(0, 1))
    return model


def genie_batch(frames=4):
    torch.manual_seed(5)
    batch = {"image": torch.randint(0, 256, (3, frames, 64, 64, 3), dtype=torch.uint8),
             "is_first": torch.zeros(3, frames, dtype=torch.bool)}
    batch["is_first"][0, 0] = True   # an episode start at the window's start counts
    batch["is_first"][1, 1] = True   # row 1: a new episode from frame 1 on
    return batch


def test_genie_phases_sum_their_losses_and_mask_across_episode_starts():
    model = genie_model()
    batch = genie_batch()
    pixels = model.frames(batch)  # (B, T, C, H, W) in [0, 1]
    assert torch.allclose(pixels[0, 0].permute(1, 2, 0), batch["image"][0, 0].float() / 255)
    # tokenizer: every frame of the window, the three VQ-VAE terms summed
    total, groups, _, metrics = model.loss(batch)  # the first phase unless told
    losses, index = model.tokenizer.loss(pixels.flatten(0, 1))
    assert total.item() == pytest.approx(sum(losses.values()).item(), rel=1e-5)
    assert metrics["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    for name, value in losses.items():
        assert metrics[f"loss_{name}"].item() == pytest.approx(value.item(), rel=1e-5), name
    assert groups == ["tokenizer"] and int(model.updates) == 1
    assert metrics["perplexity"].item() == pytest.approx(
        float(VectorQuantizer.perplexity(index, 32)), rel=1e-5)
    assert "restarted_codes" not in metrics
    assert "restarted_codes" in model.loss(batch, phase="tokenizer")[3]  # every 2nd update
    # lam: pairs (frame 0, frame 1) inside one episode only
    total, groups, _, metrics = model.loss(batch, phase="lam")
    per_frame, _, index = model.lam.loss(pixels[:, 0], pixels[:, 1])
    assert total.item() == pytest.approx(per_frame[[0, 2]].mean().item(), rel=1e-5)
    assert metrics["loss_rec"].item() == pytest.approx(total.item(), rel=1e-6)
    assert metrics["perplexity"].item() == pytest.approx(
        float(VectorQuantizer.perplexity(index, 8)), rel=1e-5)
    assert groups == ["lam"]
    one = {**batch, "is_first": batch["is_first"].clone()}
    one["is_first"][:, 1] = torch.tensor([True, False, True])  # one pair left: its own error
    total = model.loss(one, phase="lam")[0]
    assert total.item() == pytest.approx(per_frame[1].item(), rel=1e-5)
    # dynamics: frames after a restart inside the window do not count
    tokens = model.tokenizer.encode(pixels.flatten(0, 1))[1].view(3, 4, -1)
    actions = model.latent_actions(pixels)
    _, first_index, _ = model.lam.infer(pixels[:, 0], pixels[:, 1])
    assert torch.equal(actions[:, 0], torch.zeros(3, dtype=actions.dtype))
    assert torch.equal(actions[:, 1], first_index)
    valid = torch.ones(3, 4)
    valid[1, 1:] = 0.0
    torch.manual_seed(9)
    total, groups, _, metrics = model.loss(batch, phase="dynamics")
    torch.manual_seed(9)
    ce, accuracy = model.dynamics.loss(tokens, actions, valid)
    assert total.item() == pytest.approx(ce.item(), rel=1e-5) and groups == ["dynamics"]
    assert metrics["loss_tokens"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert metrics["token_accuracy"].item() == pytest.approx(accuracy.item(), rel=1e-5)
    # tokens encoded once for the phase (a `tokens` column) are what it learns on
    shuffled = {**batch, "tokens": (tokens + 1) % 32}
    torch.manual_seed(9)
    from_column = model.loss(shuffled, phase="dynamics")[0]
    torch.manual_seed(9)
    assert from_column.item() == pytest.approx(
        model.dynamics.loss((tokens + 1) % 32, actions, valid)[0].item(), rel=1e-5)
    assert int(model.updates) == 4  # tokenizer and lam updates counted, dynamics not


def test_dynamics_loss_on_one_hidden_token_hidden_below_its_frames_ratio(monkeypatch):
    """Draws fixed: frame 1's ratio is cos(pi/4); a token is hidden when its draw is strictly
    below it. With one hidden token the loss is its cross-entropy and the accuracy 1 or 0."""
    from wmtool import parallel

    torch.manual_seed(0)
    dyn = MaskGITDynamics(codes=8, actions=2, tokens=4, frames=2, dim=16, layers=1, heads=2)
    with torch.no_grad():
        dyn.head.bias.copy_(torch.arange(8.0) * 5)  # predicts code 7 everywhere
    tokens = torch.tensor([[[1, 2, 3, 4], [7, 7, 5, 6]]])
    ratio = cosine_mask_ratio(torch.tensor(0.5))
    draws = iter([torch.full((1, 2, 1), 0.5),
                  torch.stack([torch.zeros(4), torch.tensor([0.1, ratio.item(), 0.9, 0.9])])[None]])
    monkeypatch.setattr(parallel, "rand", lambda shape, device, dtype=None, dim=0: next(draws))
    ce, accuracy = dyn.loss(tokens, torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2))
    masked = torch.tensor([[[1, 2, 3, 4], [8, 7, 5, 6]]])  # only frame 1's first token hidden
    logits = dyn(masked, torch.zeros(1, 2, dtype=torch.long))
    want = torch.nn.functional.cross_entropy(logits[0, 1, :1], tokens[0, 1, :1])
    assert ce.item() == pytest.approx(want.item(), rel=1e-5)
    assert accuracy.item() == 1.0  # code 7, predicted
