"""World Models: MDN maths, VAE KL, the controller and CMA-ES, and the staged CLI pipeline."""
import json
import math

import numpy as np
import pytest
import torch
from conftest import run_wmtool

from wmtool import ckpt, config, rundir, spaces
from wmtool.behavior.brownian import BrownianPolicy
from wmtool.behavior.cmaes import CMAES
from wmtool.engine.agent import Agent
from wmtool.errors import WmtoolError
from wmtool.models.worldmodels import reparameterise, vae_kl
from wmtool.nets.dists import symlog
from wmtool.nets.mdn import MDN

CAR_OBS = {"image": spaces.image(64, 64, 3)}
CAR_ACT = spaces.continuous(3)


def mdn_params(logits, mean, log_std):
    """(D, K) arrays -> the flat (3 * D * K) head output MDN expects."""
    return torch.tensor(np.stack([logits, mean, log_std], 1), dtype=torch.float64).flatten()


def test_mdn_log_likelihood_matches_a_hand_computed_mixture():
    # one dimension, two components: pi = softmax([0, ln 3]) = (0.25, 0.75)
    params = mdn_params([[0.0, math.log(3.0)]], [[-1.0, 2.0]], [[0.0, math.log(0.5)]])
    x = 0.5
    gauss = lambda m, s: math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    expected = math.log(0.25 * gauss(-1.0, 1.0) + 0.75 * gauss(2.0, 0.5))
    mdn = MDN(params[None], mixtures=2)
    assert mdn.log_prob(torch.tensor([[x]], dtype=torch.float64)).item() == pytest.approx(expected)
    assert mdn.nll(torch.tensor([[x]], dtype=torch.float64)).item() == pytest.approx(-expected)


def test_mdn_temperature_sharpens_or_flattens_samples():
    torch.manual_seed(0)
    # two components at -3 and +3, weights 0.2 / 0.8, std 0.5; 20k draws
    params = mdn_params([[math.log(0.2), math.log(0.8)]], [[-3.0, 3.0]], [[math.log(0.5)] * 2])
    mdn = MDN(params.float().expand(20000, -1), mixtures=2)
    cold, unit, hot = (mdn.sample(t) for t in (0.1, 1.0, 2.0))
    # at tau=1 the mixture weights are respected; logits / 0.1 all but removes the minor mode
    assert (unit < 0).float().mean().item() == pytest.approx(0.2, abs=0.02)
    assert (cold < 0).float().mean().item() < 0.01
    assert (hot < 0).float().mean().item() > 0.3  # logits / 2 flattens towards 0.5
    # the noise scales with sqrt(tau): spread around the major mode's mean
    major = lambda s: s[s > 0] - 3.0
    assert major(cold).std().item() == pytest.approx(0.5 * math.sqrt(0.1), rel=0.1)
    assert major(hot).std().item() == pytest.approx(0.5 * math.sqrt(2.0), rel=0.1)
    greedy = mdn.sample(greedy=True)
    assert torch.all(greedy == 3.0)


def test_vae_kl_closed_form_and_floor():
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (s^2 + mu^2 - 1 - ln s^2), summed over dimensions
    expected = 0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 4 - 1 - math.log(4.0))
    assert vae_kl(mu, logvar, floor=0.0).item() == pytest.approx(expected)
    assert vae_kl(mu, logvar, floor=10.0).item() == 10.0  # below the floor: no pull to N(0,1)
    assert vae_kl(torch.zeros(1, 2), torch.zeros(1, 2), floor=0.0).item() == 0.0


def worldmodels_agent(*sets, size=None):
    cfg = config.compose({"env": {"id": "gym:CarRacing-v3"}}, algo="worldmodels", size=size,
                         sets=list(sets))
    return Agent("worldmodels", CAR_OBS, CAR_ACT, cfg)


def test_paper_sizes_and_the_controllers_867_parameters():
    agent = worldmodels_agent()
    counts = agent.parameter_counts()
    assert counts["behavior"] == (32 + 256) * 3 + 3 == 867
    assert agent.wm.z_dim == 32 and agent.wm.mdnrnn.hidden == 256
    assert agent.wm.mdnrnn.mixtures == 5
    cfg = agent.cfg
    vae, mdnrnn = cfg.vae, cfg.mdnrnn
    assert (vae.lr, vae.kl_tolerance, mdnrnn.lr, mdnrnn.clip) == (1e-4, 0.5, 1e-3, 1.0)
    assert (cfg.controller.popsize, cfg.controller.sigma, cfg.controller.rollouts) == (64, 0.1, 16)
    # the VAE reconstructs 64x64x3 frames through a 32-d code
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    mu, logvar = agent.wm.vae.encode(frames)
    assert mu.shape == logvar.shape == (2, 32)
    assert agent.wm.vae.decode(mu).shape == (2, 64, 64, 3)


def test_mdnrnn_phase_learns_on_codes_encoded_once_into_the_replay():
    """Before phase mdnrnn the replay gains each frame's (mu, logvar) from the frozen VAE; the
    loss on those columns equals the loss that encodes the frames itself."""
    from wmtool.data.episode import Episode
    from wmtool.data.replay import Replay
    agent = worldmodels_agent(size="debug")
    rng = np.random.default_rng(0)
    replay = Replay(CAR_OBS, CAR_ACT, capacity=10_000)
    for n in (30, 25):
        replay.add(Episode(obs={"image": rng.integers(0, 256, (n + 1, 64, 64, 3), np.uint8)},
                           action=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                           reward=rng.normal(size=n).astype(np.float32),
                           terminated=np.zeros(n, bool), truncated=np.eye(n, dtype=bool)[-1]))
    wm = agent.wm
    replay.derive(wm.phase_columns("mdnrnn"), chunk=7)  # chunks that split episodes
    assert wm.phase_columns("vae") == {}
    codes = replay.columns["vae_code"][:replay.size]
    mu, logvar = wm.vae.encode(torch.as_tensor(replay.columns["image"][:replay.size]))
    assert np.allclose(codes, torch.cat([mu, logvar], -1).detach().numpy(), atol=1e-5)
    batch = {k: torch.as_tensor(v) for k, v in replay.sample(3, 12).items()}
    torch.manual_seed(1)
    cached = wm.loss(batch, phase="mdnrnn")[0]
    torch.manual_seed(1)
    encoded = wm.loss({k: v for k, v in batch.items() if k != "vae_code"}, phase="mdnrnn")[0]
    assert cached.item() == pytest.approx(encoded.item(), rel=1e-4)
    # the dream's start states: episodes' first rows (World Models' controller.starts=episode)
    starts = replay.sample_episode_starts(50)
    assert starts["is_first"].shape == (50, 1) and starts["is_first"].all()
    firsts = {replay.columns["image"][0].tobytes(), replay.columns["image"][31].tobytes()}
    assert {row.tobytes() for row in starts["image"][:, 0]} == firsts
    # new rows would lack codes: adding an episode drops the derived column
    replay.add(Episode(obs={"image": np.zeros((3, 64, 64, 3), np.uint8)},
                       action=np.zeros((2, 3), np.float32), reward=np.zeros(2, np.float32),
                       terminated=np.zeros(2, bool), truncated=np.array([False, True])))
    assert "vae_code" not in replay.columns


def test_controller_search_starts_from_init_bias():
    agent = worldmodels_agent("controller.init_bias=[0,0,-2]", size="debug")
    assert agent.behavior.bias.tolist() == [0.0, 0.0, -2.0]
    # CMA-ES samples its first generation around the controller's weights
    first = agent.behavior.cmaes.ask(agent.behavior.flat().detach().double().numpy())
    assert abs(first[:, -1].mean() + 2.0) < 0.1 and abs(first[:, -3].mean()) < 0.1
    # a zero feature vector then releases CarRacing's brake: tanh(-2) -> brake (x+1)/2 ~ 0.02
    action = agent.behavior.act(torch.zeros(1, agent.wm.feat_dim))
    assert (action[0, 2].item() + 1) / 2 < 0.02
    with pytest.raises(WmtoolError, match="init_bias has 2 values"):
        worldmodels_agent("controller.init_bias=[0,-2]", size="debug")


def test_cmaes_improves_a_quadratic_and_resumes_from_its_buffers():
    target = np.linspace(-1, 1, 10)
    fitness = lambda xs: -((xs - target) ** 2).sum(1)
    np.random.seed(0)
    es = CMAES(10, popsize=12, sigma=0.3, seed=0)
    first = None
    for _ in range(30):
        xs = es.ask(np.zeros(10))
        f = fitness(xs)
        first = f.mean() if first is None else first
        es.tell(xs, f)
    assert fitness(es.mean.numpy()[None])[0] > 0.05 * first  # far closer than the start
    # a fresh strategy rebuilt from the saved buffers continues where this one stopped
    resumed = CMAES(10, popsize=12, sigma=0.3, seed=0)
    resumed.load_state_dict(es.state_dict())
    live, rebuilt = es.strategy(None), resumed.strategy(None)
    assert np.allclose(rebuilt.mean, live.mean) and rebuilt.sigma == pytest.approx(live.sigma)
    assert np.allclose(rebuilt.sm.C, live.sm.C)
    assert rebuilt.countiter == live.countiter == 30
    before = fitness(resumed.mean.numpy()[None])[0]
    for _ in range(20):
        xs = resumed.ask(None)
        resumed.tell(xs, fitness(xs))
    assert fitness(resumed.mean.numpy()[None])[0] > before


def test_cmaes_in_the_dream_improves_a_known_objective():
    """The dream's reward is rigged to the LSTM state's first unit after the action: CMA-ES,
    scoring candidates only inside the model, must find actions that raise it."""
    torch.manual_seed(0)
    np.random.seed(0)
    agent = worldmodels_agent("controller.popsize=16", "controller.rollouts=2",
                              "controller.horizon=5", "controller.sigma=0.5", size="debug")
    wm, controller = agent.wm, agent.behavior
    with torch.no_grad():
        wm.mdnrnn.reward.weight.zero_()
        wm.mdnrnn.reward.bias.zero_()
        wm.mdnrnn.reward.weight[0, wm.z_dim] = 3.0  # symlog-space reward = 3 h_0
        wm.mdnrnn.done.bias.fill_(-20.0)  # never ends
        wm.mdnrnn.cell.weight_ih[:, wm.z_dim:] *= 20  # the action moves h strongly
    start = {k: v.repeat(8, 1) for k, v in wm.initial(1).items()}
    score = lambda: controller.dream_returns(wm, start, controller.flat().detach()
                                             .expand(8, -1), 5).mean().item()
    before = score()
    for _ in range(15):
        metrics = controller.learn(wm, start, None, None,
                                   lambda: torch.autocast("cpu", enabled=False))
    assert metrics["train/cmaes/generation"] == 15
    assert score() > before + 1.0


def test_brownian_actions_are_smooth_bounded_and_reset_per_episode():
    policy = BrownianPolicy(CAR_ACT, seed=0)
    first = np.array([True, True])
    actions = [policy.act({"is_first": first})]
    for _ in range(200):
        actions.append(policy.act({"is_first": np.array([False, False])}))
    a = np.stack(actions)
    steps = np.abs(np.diff(a, axis=0))
    uniform = np.abs(np.diff(np.random.default_rng(0).uniform(-1, 1, a.shape), axis=0))
    assert a.min() >= -1 and a.max() <= 1
    assert steps.mean() < 0.2 * uniform.mean()  # a random walk, not white noise
    assert a[:, 0].std() > 0.1  # but it does wander
    restarted = policy.act({"is_first": np.array([True, False])})
    assert abs(restarted[1] - a[-1, 1]).max() < 0.5  # env 1 continues its walk
    with pytest.raises(WmtoolError, match="continuous"):
        BrownianPolicy(spaces.discrete(4))


@pytest.fixture(scope="module")
def car_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("car") / "car.h5"
    r = run_wmtool("collect", "--env", "gym:CarRacing-v3", "--policy", "brownian",
                   "--episodes", "3", "--set", "env.time_limit=40", "--out", path, "--quiet",
                   "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["policy"] == "brownian"
    return path


@pytest.mark.slow
def test_staged_train_imagine_eval_dream_through_the_cli(tmp_path, car_data, cli):
    run = tmp_path / "wm"
    base = ["--size", "debug", "--set", "runtime.threads=1", "--set", "train.log_every=5",
            "--quiet", "--json"]
    r = cli("train", "--algo", "worldmodels", "--data", car_data, "--phase", "vae",
                   "--set", "vae.steps=30", "--set", "mdnrnn.steps=20", "--run-dir", run, *base)
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["updates/vae"] == 30 and "updates/mdnrnn" not in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    vae_loss = [row["train/vae/loss"] for row in rows if "train/vae/loss" in row]
    assert vae_loss[-1] < vae_loss[0]
    r = cli("train", "--resume", run, "--phase", "mdnrnn", "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["updates/vae"], out["updates/mdnrnn"]) == (30, 20)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert any("train/mdnrnn/loss_z_nll" in row for row in rows)

    r = cli("eval", "--run", run, "--data", car_data, "--batches", "2", "--json")
    assert r.exit_code == 0, r.stderr
    fit = json.loads(r.stdout)["phases"]
    assert set(fit) == {"vae", "mdnrnn"}
    assert fit["vae"]["trained"]["loss_rec"] < fit["vae"]["untrained"]["loss_rec"]
    assert fit["mdnrnn"]["trained"]["loss"] < fit["mdnrnn"]["untrained"]["loss"]

    dream = tmp_path / "dream"
    r = cli("imagine", "--run", run, "--steps", "2", "--set", "mdnrnn.temperature=1.15",
                   "--set", "controller.popsize=6", "--set", "controller.rollouts=2",
                   "--set", "controller.horizon=10", "--env", "gym:CarRacing-v3",
                   "--set", "env.time_limit=30", "--eval-episodes", "1", "--run-dir", dream,
                   "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["updates"] == 2 and out["env_steps_training"] == 0
    assert out["imagined_steps"] == 2 * (6 + 1) * 2 * 10  # the acting controller plays too
    assert out["eval"]["episodes"] == 1 and out["eval"]["length_mean"] == 30
    assert rundir.load_config(dream).mdnrnn.temperature == 1.15
    saved = ckpt.load(dream / "checkpoints" / "latest.pt")["model"]
    assert int(saved["behavior.cmaes.generation"]) == 2  # the search state is checkpointed
    assert not torch.equal(saved["behavior.weight"], torch.zeros_like(saved["behavior.weight"]))

    real = tmp_path / "real"  # the paper's CarRacing protocol: candidates play the real env
    r = cli("imagine", "--run", run, "--steps", "1", "--set", "controller.score_in=real",
            "--set", "controller.workers=2",
            "--env", "gym:CarRacing-v3", "--set", "env.time_limit=30",
            "--set", "controller.horizon=10", "--set", "controller.popsize=4",
            "--set", "controller.rollouts=1", "--eval-episodes", "1", "--run-dir", real,
            "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    # candidates' (and the acting controller's) rollouts end at the horizon, evaluation not
    assert out["imagined_steps"] == 0 and out["env_steps_training"] >= (4 + 1) * 10
    assert out["eval"]["length_mean"] == 30
    rows = [json.loads(line) for line in open(real / "metrics.jsonl")]
    assert any("train/cmaes/acting_score" in row for row in rows)
    from wmtool.engine.session import TrainSession
    resumed = TrainSession.resume(real, quiet=True)  # an interrupted run goes on in the env
    try:
        assert resumed.agent.behavior.real_scorer is not None
        assert resumed.score_vec.num_envs == 2
    finally:
        resumed.close()

    # the trained controller collects more data (World Models' iterative procedure)
    more = tmp_path / "more.h5"
    more.write_bytes(car_data.read_bytes())
    r = cli("collect", "--env", "gym:CarRacing-v3", "--policy", f"run:{real}", "--episodes", "1",
            "--set", "env.time_limit=30", "--seed", "5", "--out", more, "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["file_episodes"] == 4
    from wmtool.data.store import EpisodeReader
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loading import load_run
    with EpisodeReader(more) as reader:
        assert reader.policy == f"brownian,run:{real}"
        played = reader.episode(3)
    agent = AgentPolicy(load_run(real, optimizers=False).agent, "greedy")
    replayed = [agent.act({"image": played.obs["image"][t:t + 1],
                           "is_first": np.array([t == 0])}) for t in range(played.length)]
    np.testing.assert_allclose(np.concatenate(replayed), played.action, atol=1e-6)
    r = cli("collect", "--env", "gym:CarRacing-v3", "--policy", f"run:{tmp_path / 'nope'}",
            "--episodes", "1", "--out", more, "--quiet")
    assert r.exit_code == 1 and "not a wmtool run directory" in r.stderr

    r = cli("eval", "--run", dream, "--episodes", "1", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["length_mean"] == 30
    video = tmp_path / "open.mp4"
    r = cli("dream", "--run", run, "--data", car_data, "--render", video,
                   "--context", "4", "--horizon", "4", "--sequences", "2", "--json")
    assert r.exit_code == 0, r.stderr
    assert set(json.loads(r.stdout)["error"]) == {"image", "reward"}
    import imageio.v3 as iio
    assert iio.imread(video).shape[0] == 8


def test_worldmodels_refuses_online_training_and_steps(tmp_path, car_data, cli):
    r = cli("train", "--algo", "worldmodels", "--env", "gym:CarRacing-v3", "--size",
                   "debug", "--run-dir", tmp_path / "online", "--quiet")
    assert r.exit_code == 1 and "from a dataset" in r.stderr and "--data" in r.stderr
    r = cli("train", "--algo", "worldmodels", "--data", car_data, "--size", "debug",
                   "--steps", "10", "--run-dir", tmp_path / "steps", "--quiet")
    assert r.exit_code == 1 and "vae.steps" in r.stderr
    r = cli("train", "--algo", "worldmodels", "--data", car_data, "--size", "debug",
                   "--phase", "joint", "--run-dir", tmp_path / "phase", "--quiet")
    assert r.exit_code == 1 and "vae, mdnrnn" in r.stderr


def test_in_real_is_refused_for_gradient_behaviours(tmp_path, cli):
    run = tmp_path / "dreamer"
    r = cli("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size", "debug",
            "--steps", "150", "--set", "train.prefill=100", "--set", "train.train_ratio=16",
            "--set", "train.batch=4", "--set", "train.length=16", "--run-dir", run, "--quiet")
    assert r.exit_code == 0, r.stderr
    r = cli("imagine", "--run", run, "--steps", "1", "--set", "controller.score_in=real",
            "--run-dir",
            tmp_path / "im", "--quiet")
    assert r.exit_code == 1 and "cannot be scored in the real env" in r.stderr


def test_exploration_noise_around_a_policy():
    from wmtool.behavior.noisy import NoisyPolicy

    class Fixed:
        def __init__(self, action):
            self.action = action

        def act(self, obs):
            return np.repeat(self.action[None], len(obs["is_first"]), 0)

    obs = {"is_first": np.zeros(20000, bool)}
    cont = NoisyPolicy(Fixed(np.array([0.0, 0.95], np.float32)), spaces.continuous(2), 0.3, 1)
    a = cont.act(obs)
    assert a.dtype == np.float32 and a.min() >= -1 and a.max() <= 1
    assert a[:, 0].mean() == pytest.approx(0.0, abs=0.01)
    assert a[:, 0].std() == pytest.approx(0.3, rel=0.03)
    assert (a[:, 1] == 1.0).mean() == pytest.approx(0.43, abs=0.02)  # P(N(0, .3) > .05), clipped
    disc = NoisyPolicy(Fixed(np.array(2)), spaces.discrete(4), 0.2, 1).act(obs)
    # a uniform replacement keeps action 2 a quarter of the time: 0.2 * 3/4 change
    assert (disc != 2).mean() == pytest.approx(0.15, abs=0.01)
    with pytest.raises(WmtoolError, match="--noise"):
        NoisyPolicy(Fixed(np.array(2)), spaces.discrete(4), 1.5)


# -- V's and M's losses written out (make mutate: docs/mutation.md) -------------------------
def test_vae_kl_is_per_row_and_reparameterised_samples_use_the_std():
    mu = torch.tensor([[1.0, -2.0], [0.0, 0.5], [3.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [1.0, -1.0], [0.0, 0.0]])
    want = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    assert torch.allclose(vae_kl(mu, logvar, floor=0.0), want)
    assert torch.allclose(vae_kl(mu, logvar, floor=2.0), want.clamp(min=2.0))
    torch.manual_seed(0)
    eps = torch.randn_like(mu)
    torch.manual_seed(0)
    assert torch.allclose(reparameterise(mu, logvar), mu + torch.exp(0.5 * logvar) * eps)


@pytest.mark.parametrize("shift", [0.0, 2.0], ids=["kl-below-floor", "kl-above-floor"])
def test_vae_loss_is_summed_squared_error_plus_the_floored_kl(shift):
    """V: per frame, sum of squared pixel errors (pixels in [0, 1]) of the decoded sample
    z = mu + sigma eps, plus max(KL(N(mu, sigma) || N(0, 1)), 0.5 nats x z); mean over frames."""
    torch.manual_seed(0)
    wm = worldmodels_agent(size="debug").wm
    with torch.no_grad():
        wm.vae.mu.bias.add_(shift)  # codes far from the prior: the KL is above the floor
    frames = torch.randint(0, 256, (3, 1, 64, 64, 3), dtype=torch.uint8)
    torch.manual_seed(1)
    loss, groups, post, metrics = wm.loss({"image": frames}, phase="vae")
    mu, logvar = wm.vae.encode(frames)
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = ((wm.vae.decode(z) - frames.float() / 255.0) ** 2).sum((-3, -2, -1))
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    floor = 0.5 * wm.z_dim
    assert (kl > floor).all() if shift else (kl < floor).all()
    want = (rec + kl.clamp(min=floor)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert metrics["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert metrics["loss_rec"].item() == pytest.approx(rec.mean().item(), rel=1e-5)
    assert metrics["loss_kl"].item() == pytest.approx(kl.clamp(min=floor).mean().item(), rel=1e-5)
    params = list(wm.vae.parameters())
    for g, e in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        assert torch.allclose(g, e, atol=1e-5, rtol=1e-4)
    assert groups == ["vae"] and post is None


def mdnrnn_batch(wm, length=5):
    rng = np.random.default_rng(0)
    data = {"image": rng.integers(0, 256, (3, length, 64, 64, 3), np.uint8),
            "prev_action": rng.uniform(-1, 1, (3, length, 3)).astype(np.float32),
            "reward": rng.normal(size=(3, length)).astype(np.float32) * 3,
            "is_first": np.zeros((3, length), bool), "is_terminal": np.zeros((3, length), bool)}
    data["is_first"][0, 0] = True  # row 0 starts an episode; row 2 starts mid-episode
    data["is_first"][1, 3] = True  # row 1 restarts inside the window
    data["is_terminal"][1, 2] = True
    data["is_terminal"][2, 4] = True
    batch = {k: torch.as_tensor(v) for k, v in data.items()}
    with torch.no_grad():
        mu, logvar = wm.vae.encode(batch["image"])
    batch["vae_code"] = torch.cat([mu + 1.0, logvar], -1)  # not what the frames encode to
    return batch


def test_mdnrnn_loss_terms_written_out():
    """M: from the LSTM state h_t (reset to zero at episode starts) the MDN's negative
    log-likelihood of z_t, averaged over z's dimensions (not at the first row of a window
    that starts mid-episode); from [z_t, h_t] the squared error to symlog(r_t) and the BCE of
    the episode end, on real transitions only (not at episode starts). Codes come from the
    replay's vae_code column when it has one."""
    torch.manual_seed(0)
    wm = worldmodels_agent(size="debug").wm
    batch = mdnrnn_batch(wm)
    torch.manual_seed(1)
    loss, groups, post, metrics = wm.loss(batch, phase="mdnrnn")
    mu, logvar = batch["vae_code"].chunk(2, -1)
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    m = wm.mdnrnn
    h = c = torch.zeros(3, m.hidden)
    prev = torch.zeros(3, wm.z_dim)
    nll, reward, done = [], [], []
    for t in range(5):
        h, c = m.cell(torch.cat([prev, batch["prev_action"][:, t]], -1), (h, c))
        keep = (~batch["is_first"][:, t]).float()[:, None]
        h, c = h * keep, c * keep
        nll.append(MDN(m.mdn(h), m.mixtures).nll(z[:, t]))
        feat = torch.cat([z[:, t], h], -1)
        reward.append((m.reward(feat)[:, 0] - symlog(batch["reward"][:, t])) ** 2)
        done.append(torch.nn.functional.binary_cross_entropy_with_logits(
            m.done(feat)[:, 0], batch["is_terminal"][:, t].float(), reduction="none"))
        prev = z[:, t]
    first = batch["is_first"]
    history = torch.ones(3, 5)
    history[:, 0] = first[:, 0].float()
    transition = (~first).float()
    mean = lambda x, mask: (torch.stack(x, 1) * mask).sum() / mask.sum()
    parts = {"z_nll": mean(nll, history), "reward": mean(reward, transition),
             "done": mean(done, transition)}
    for name, value in parts.items():
        assert metrics[f"loss_{name}"].item() == pytest.approx(value.item(), rel=1e-5), name
    want = sum(parts.values())
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert metrics["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    params = list(m.parameters())
    for g, e in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        assert torch.allclose(g, e, atol=1e-5, rtol=1e-4)
    assert groups == ["mdnrnn"] and torch.allclose(post["z"], z)
    assert torch.allclose(post["h"][:, -1], h)


def test_mdn_parameters_are_laid_out_per_dimension_with_a_bounded_log_std():
    """(..., D * 3 * K) -> per dimension: K logits, K means, K log stds clamped to [-7, 5]."""
    params = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).reshape(2, 18) - 9.0
    mdn = MDN(params, mixtures=3)
    p = params.reshape(2, 2, 3, 3)  # (rows, dims, [logit, mean, log std], K)
    assert torch.equal(mdn.logits, p[..., 0, :]) and torch.equal(mdn.mean, p[..., 1, :])
    assert torch.equal(mdn.log_std, p[..., 2, :].clamp(-7.0, 5.0))
    big = MDN(torch.tensor([[0.0, 0.0, 9.0], [0.0, 0.0, -9.0]]), mixtures=1)
    assert big.log_std.flatten().tolist() == [5.0, -7.0]
    x = torch.tensor([[0.5, -1.0], [3.0, -2.0]])
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=mdn.logits),
        torch.distributions.Normal(mdn.mean, mdn.log_std.exp()))
    assert torch.allclose(mdn.log_prob(x), mix.log_prob(x), atol=1e-5)
    assert torch.allclose(mdn.nll(x), -mix.log_prob(x).mean(-1), atol=1e-5)
