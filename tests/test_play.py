"""`wmtool play` in-process: the real Starlette app over a real WebSocket (Starlette's test
client), on tiny trained runs of each family: the handshake, frames of the model's size, a
key that changes the action, the same seed and keys giving the same frames, reset, a
recorded session that round-trips as a store, hostile messages survived, other origins and
a second tab refused."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wmtool.data.store import EpisodeReader
from wmtool.engine.loading import load_run
from wmtool.play.server import DREAM, make_app
from wmtool.play.session import PlaySession, Start

TestClient = pytest.importorskip("starlette.testclient").TestClient

TINY = ["--size", "debug", "--set", "runtime.threads=1", "--set", "train.batch=4",
        "--set", "train.length=16", "--set", "train.train_ratio=16",
        "--set", "train.eval_episodes=1", "--set", "train.prefill=60", "--quiet"]


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    """DreamerV3 on CartPole from 64x64 pixels, trained for a moment."""
    from typer.testing import CliRunner

    from wmtool.cli import app

    run = tmp_path_factory.mktemp("play") / "pix"
    res = CliRunner().invoke(app, ["train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1",
                                   "--set", "env.obs=pixels", "--steps", "80", *TINY,
                                   "--run-dir", str(run)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return run


def session(run, seed=0, **kwargs):
    return PlaySession(load_run(run, optimizers=False, threads=1), Start(seed=seed), **kwargs)


def frames_of(messages):
    """The decoded dream/real pictures and the states among a tick's messages."""
    out = {"dream": [], "real": [], "state": []}
    for m in messages:
        if isinstance(m, bytes):
            image = np.asarray(Image.open(io.BytesIO(m[1:])))
            out["dream" if m[0] == DREAM else "real"].append(image)
        else:
            out["state"].append(json.loads(m))
    return out


def receive_tick(ws, real=False):
    """One tick's messages: the dream (and the real frame), then the state."""
    messages = [ws.receive_bytes()]
    if real:
        messages.append(ws.receive_bytes())
    messages.append(ws.receive_text())
    return frames_of(messages)


def test_handshake_frames_keys_and_reset_over_a_websocket(pixel_run):
    s = session(pixel_run, real=True)
    logged = []
    client = TestClient(make_app(s, fps=60, log=logged.append))
    assert "<canvas" in client.get("/").text
    with client.websocket_connect("/ws") as ws:
        hello = json.loads(ws.receive_text())
        assert hello["type"] == "hello" and hello["world"] == "dream" and hello["real"]
        assert {k for e in hello["keys"] for k in e["keys"]} >= {"ArrowLeft", "ArrowRight"}
        tick = receive_tick(ws, real=True)
        assert tick["dream"][0].shape == (64, 64, 3) and tick["real"][0].shape == (64, 64, 3)
        ws.send_text(json.dumps({"type": "keys", "held": ["ArrowRight"], "seq": 5}))
        for _ in range(3):
            tick = receive_tick(ws, real=True)
        state = tick["state"][0]
        assert state["action"] == [1] and state["ack"] == 5
        assert "psnr" in state["drift"] and 0 < state["drift"]["psnr"] < 100
        ws.send_text(json.dumps({"type": "keys", "held": ["ArrowLeft"], "seq": 6}))
        for _ in range(2):
            state = receive_tick(ws, real=True)["state"][0]
        assert state["action"] == [0]
        ws.send_text(json.dumps({"type": "control", "op": "reset", "seq": 7}))
        steps = [receive_tick(ws, real=True)["state"][0]["step"] for _ in range(3)]
        assert min(steps) <= 1  # counted again from the new start
    s.close()


def test_the_same_seed_and_keys_give_the_same_frames(pixel_run):
    def play(seed):
        s = session(pixel_run, seed=seed)
        out = [s.tick({"ArrowLeft"} if t % 3 else {"ArrowRight"}).dream for t in range(6)]
        s.close()
        return out

    first, again, other = play(3), play(3), play(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_restart_replays_the_same_start_and_two_actions_lead_to_different_dreams(pixel_run):
    s = session(pixel_run)

    def from_the_start(key):
        s.reset(same_start=True)
        return [s.tick({key}).dream for _ in range(8)][-1]

    left, right, left_again = (from_the_start(k) for k in ("ArrowLeft", "ArrowRight",
                                                            "ArrowLeft"))
    assert np.array_equal(left, left_again)
    assert not np.array_equal(left, right)
    s.close()


def test_a_recorded_session_is_an_ordinary_store(pixel_run, tmp_path):
    out = tmp_path / "played.h5"
    s = session(pixel_run, record=out)
    actions = []
    for t in range(30):
        frame = s.tick({"ArrowLeft"} if t % 2 else {"ArrowRight"})
        actions += frame.action  # empty on the tick that starts a new episode
    s.close()
    with EpisodeReader(out) as reader:
        assert reader.policy == "play" and reader.env_id == "gym:CartPole-v1"
        episodes = list(reader)
    played = np.concatenate([e.action for e in episodes])
    assert played.tolist() == actions and len(episodes) >= 2  # CartPole falls: new episodes
    assert episodes[0].obs["image"].shape[1:] == (64, 64, 3)


def test_hostile_messages_are_logged_and_survived(pixel_run):
    s = session(pixel_run)
    logged = []
    client = TestClient(make_app(s, fps=60, log=logged.append))
    with client.websocket_connect("/ws") as ws:
        ws.receive_text()
        for bad in ["not json", json.dumps({"type": "keys", "held": "ArrowLeft"}),
                    json.dumps({"type": "control", "op": "rm -rf"}), "x" * 100_000,
                    json.dumps({"type": "set", "name": "temperature", "value": "hot"}),
                    json.dumps([1, 2]), json.dumps({"type": "nope"})]:
            ws.send_text(bad)
        ws.send_bytes(b"\x00\x01")
        for _ in range(3):
            tick = receive_tick(ws)
        assert tick["dream"][0].shape == (64, 64, 3)
    assert len([line for line in logged if "ignored" in line]) == 8
    s.close()


def test_other_origins_and_a_second_tab_are_refused(pixel_run):
    from starlette.websockets import WebSocketDisconnect

    s = session(pixel_run)
    client = TestClient(make_app(s, fps=60, log=lambda line: None))
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_text()
    with client.websocket_connect("/ws") as first:
        first.receive_text()
        with client.websocket_connect("/ws") as second:
            msg = json.loads(second.receive_text())
            assert msg["type"] == "error" and "another tab" in msg["message"]
    s.close()


def test_starts_from_a_stored_window_and_an_image(pixel_run, tmp_path):
    from wmtool.errors import UsageError

    loaded = load_run(pixel_run, optimizers=False, threads=1)
    store = pixel_run / "replay" / "episodes.h5"
    s = PlaySession(loaded, Start(data=store, episode=1, step=5))
    assert s.tick({"ArrowLeft"}).dream.shape == (64, 64, 3) and s.env is None
    with pytest.raises(UsageError, match="--step 999"):
        PlaySession(loaded, Start(data=store, episode=1, step=999))
    with pytest.raises(UsageError, match="--real and --record"):
        PlaySession(loaded, Start(data=store), real=True)
    picture = np.random.default_rng(0).integers(0, 255, (100, 80, 3), dtype=np.uint8)
    s = PlaySession(loaded, Start(image=picture))
    assert s.tick().dream.shape == (64, 64, 3)


def test_play_refuses_bad_starts_on_the_command_line(pixel_run, tmp_path):
    from conftest import run_wmtool

    res = run_wmtool("play", "--run", pixel_run, "--data", pixel_run / "replay" /
                     "episodes.h5", "--real")
    assert res.returncode == 2 and "--real and --record" in res.stderr
    res = run_wmtool("play", "--run", pixel_run, "--image", tmp_path / "none.png")
    assert res.returncode == 2 and "no such file" in res.stderr


def untrained(algo, env_id, *sets):
    """A run's loaded agent without the training: play's mechanics need no learning."""
    from wmtool import config
    from wmtool.engine.agent import Agent
    from wmtool.engine.loading import LoadedRun
    from wmtool.envs.factory import make_env

    cfg = config.compose({"env": {"id": env_id}}, algo=algo, size="debug", sets=list(sets))
    env = make_env(cfg.env)
    obs_space, act_space = env.obs_space, env.act_space
    env.close()
    agent = Agent(algo, obs_space, act_space, cfg)
    agent.eval()
    return LoadedRun(Path(f"untrained-{algo}"), {"env": env_id}, cfg, {}, agent, 1)


def test_world_models_offers_its_temperature_and_a_stick(tmp_path):
    loaded = untrained("worldmodels", "gym:CarRacing-v3", "env.time_limit=50")
    s = PlaySession(loaded, Start(seed=1), real=True)
    hello = s.describe()
    assert hello["controls"]["temperature"]["value"] == loaded.agent.wm.temperature
    assert not hello["discrete"] and hello["keys"][0]["keys"] == ["ArrowLeft", "ArrowRight"]
    s.world.set_control("temperature", 1.5)
    assert loaded.agent.wm.temperature == 1.5
    steer = [s.tick({"ArrowRight"}).action[0] for _ in range(6)]
    assert 0 < steer[0] < steer[-1] <= 1  # smoothed towards full right, within bounds
    frame = s.tick(set())
    assert frame.dream.shape == (64, 64, 3) and frame.real.shape == (64, 64, 3)
    s.close()


def test_genie_plays_latent_actions_from_an_image():
    loaded = untrained("genie", "gym:CartPole-v1", "env.obs=pixels")
    picture = np.full((64, 64, 3), 128, np.uint8)
    s = PlaySession(loaded, Start(image=picture))
    hello = s.describe()
    assert hello["world"] == "latent-actions" and not hello["has_policy"]
    assert len(hello["keys"]) == loaded.agent.wm.latent_action_count
    assert s.tick({"3"}).action == [2] and s.tick(set()).dream.shape[:2] == (64, 64)
    s.close()


def test_a_model_without_a_decoder_plays_the_real_env_and_says_so():
    loaded = untrained("tdmpc2", "dmc:cartpole-balance", "env.time_limit=40")
    s = PlaySession(loaded, Start(seed=0))
    hello = s.describe()
    assert hello["world"] == "real-only" and "no decoder" in hello["note"]
    frame = s.tick({"ArrowRight"})
    assert frame.value is not None and frame.reward is not None and frame.real is None
    s.policy = True
    assert len(s.tick().action) == loaded.agent.act_space.shape[0]
    s.close()


@pytest.mark.slow
def test_ctrl_c_stops_the_server_and_keeps_the_recording(pixel_run, tmp_path):
    """A real `wmtool play --record` process, a real WebSocket client, a real SIGINT to its
    process group: exit 130 with one line, and the store holds every real step played,
    readable by `data info` and trainable by `train --data`."""
    import asyncio
    import os
    import signal
    import subprocess
    import time

    import websockets
    from conftest import BIN, run_wmtool

    out = tmp_path / "played.h5"
    proc = subprocess.Popen([str(BIN), "play", "--run", str(pixel_run), "--record", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = proc.stdout.readline().strip()
    played = []

    async def play():
        async with websockets.connect(url.replace("http", "ws") + "ws") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "keys", "held": ["ArrowLeft"], "seq": 1}))
            start = time.monotonic()
            while time.monotonic() - start < 2:
                message = await ws.recv()
                if isinstance(message, str) and json.loads(message)["action"]:
                    played.append(json.loads(message)["step"])  # a tick that stepped
            os.killpg(proc.pid, signal.SIGINT)

    asyncio.run(play())
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in proc.stderr.read()
    info = json.loads(run_wmtool("data", "info", out, "--json").stdout)
    assert info["policy"] == "play" and info["steps"] >= len(played) > 10
    res = run_wmtool("train", "--algo", "dreamerv3", "--data", out, "--steps", "2", *TINY,
                     "--run-dir", tmp_path / "from-play")
    assert res.returncode == 0, res.stderr


def test_keys_follow_the_envs_action_meanings_and_a_stick_eases():
    from wmtool import spaces
    from wmtool.play.keymap import KeyMap

    ale = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "UPFIRE"]
    keys = KeyMap(spaces.discrete(len(ale)), ale)
    assert keys.action(set()) == 0 and keys.action({"ArrowUp"}) == 2
    assert keys.action({"ArrowUp", "ArrowLeft"}) == 7 and keys.action({"ArrowUp", " "}) == 8
    plain = KeyMap(spaces.discrete(3))
    assert plain.action({"3"}) == 2 and plain.action({"ArrowRight"}) == 1
    stick = KeyMap(spaces.continuous(2))
    pushes = [stick.action({"ArrowUp"})[1] for _ in range(20)]
    assert 0 < pushes[0] < pushes[5] < pushes[-1] <= 1.0 and pushes[-1] > 0.99
    assert stick.action(set(), axes=[-1.0, 0.0])[0] < 0  # a gamepad's axis
    released = [stick.action(set())[1] for _ in range(20)]
    assert abs(released[-1]) < 0.01
