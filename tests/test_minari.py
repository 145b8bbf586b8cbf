"""Minari datasets in and out, built locally (no download): a dataset Minari's own
DataCollector recorded imports exactly and trains offline; a wmtool store round-trips through
`minari.load_dataset` with images, actions and seeds unchanged."""
import json

import gymnasium
import numpy as np
import pytest

from wmtool.data.store import EpisodeReader

minari = pytest.importorskip("minari")


def ok(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def episodes(path):
    with EpisodeReader(path) as reader:
        return list(reader)


def test_a_dataset_minaris_collector_recorded_imports_exactly_and_trains(cli, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gymnasium.make("CartPole-v1"), record_infos=False)
    for seed in (10, 11, 12, 13):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.create_dataset(dataset_id="cartpole/collected-v0", algorithm_name="random")
    store = tmp_path / "imported.h5"
    out = ok(cli("data", "import-minari", "cartpole/collected-v0", "--out", store, "--json"))
    assert out["episodes"] == 4 and out["env"] == "gym:CartPole-v1"
    theirs = list(minari.load_dataset("cartpole/collected-v0").iterate_episodes())
    ours = episodes(store)
    for a, b in zip(theirs, ours):
        np.testing.assert_array_equal(b.obs["vector"], a.observations.astype(np.float32))
        np.testing.assert_array_equal(b.action, a.actions)
        np.testing.assert_array_equal(b.reward, a.rewards.astype(np.float32))
        np.testing.assert_array_equal(b.terminated, a.terminations)
        np.testing.assert_array_equal(b.truncated, a.truncations)
    assert [e.seed for e in ours] == [10, 11, 12, 13]
    # importing again into the same --out neither appends duplicates nor touches the file
    before = store.read_bytes()
    again = cli("data", "import-minari", "cartpole/collected-v0", "--out", store)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert store.read_bytes() == before and len(episodes(store)) == 4
    trained = ok(cli("train", "--algo", "dreamerv3", "--data", store, "--size", "debug",
                     "--steps", "2", "--set", "train.batch=2", "--set", "train.length=8",
                     "--run-dir", tmp_path / "run", "--json"))
    assert trained["updates"] == 2


@pytest.mark.parametrize("env,obs", [("gym:CartPole-v1", "both"), ("gym:Pendulum-v1", "state")])
def test_a_store_round_trips_through_minari_unchanged(cli, tmp_path, monkeypatch, env, obs):
    """Images (CartPole's rendered frames) come back bit for bit: written raw, not JPEG;
    Pendulum's continuous actions come back as wmtool's [-1, 1] values."""
    store, back = tmp_path / "ours.h5", tmp_path / "back.h5"
    ok(cli("collect", "--env", env, "--obs", obs, "--episodes", "2", "--seed", "7",
           "--set", "env.time_limit=30", "--out", store, "--json"))
    out = ok(cli("data", "export-minari", store, "--out", tmp_path / "minari", "--id",
                 "wmtool/test/roundtrip-v0", "--json"))
    assert out["episodes"] == 2
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dataset = minari.load_dataset("wmtool/test/roundtrip-v0")
    assert dataset.storage.jpeg_encoding is False
    original = episodes(store)
    for theirs, mine in zip(dataset.iterate_episodes(), original):
        for key, value in mine.obs.items():
            np.testing.assert_array_equal(theirs.observations[key], value)
        np.testing.assert_array_equal(theirs.actions, mine.action)
    ok(cli("data", "import-minari", "wmtool/test/roundtrip-v0", "--out", back, "--json"))
    # the first episode starts from the collect seed; later resets continue its generator
    assert [e.seed for e in episodes(back)] == [e.seed for e in original] == [7, -1]
    for a, b in zip(original, episodes(back)):
        assert a.obs.keys() == b.obs.keys()
        for key in a.obs:
            np.testing.assert_array_equal(a.obs[key], b.obs[key])
        for field in ("action", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    with EpisodeReader(back) as reader:
        assert reader.env_id == env


def test_an_observation_only_store_is_refused(cli, tmp_path):
    store, frames = tmp_path / "cp.h5", tmp_path / "frames.h5"
    ok(cli("collect", "--env", "gym:CartPole-v1", "--episodes", "1", "--out", store, "--json"))
    ok(cli("data", "drop-actions", store, "--out", frames, "--json"))
    res = cli("data", "export-minari", frames, "--out", tmp_path / "minari")
    assert res.exit_code == 1 and "holds observations only" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_discrete_observations_import_as_one_hot_vectors(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gymnasium.make("FrozenLake-v1"), record_infos=False)
    env.reset(seed=3)
    for _ in range(40):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.create_dataset(dataset_id="frozenlake/collected-v0", algorithm_name="random")
    store = tmp_path / "lake.h5"
    ok(cli("data", "import-minari", "frozenlake/collected-v0", "--out", store, "--json"))
    theirs = list(minari.load_dataset("frozenlake/collected-v0").iterate_episodes())
    for a, b in zip(theirs, episodes(store)):
        np.testing.assert_array_equal(b.obs["vector"], np.eye(16, dtype=np.float32)[a.observations])
        np.testing.assert_array_equal(b.action, a.actions)
