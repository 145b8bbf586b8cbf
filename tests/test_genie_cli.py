"""Genie from frames alone through the CLI: action-free data in (dropped actions, imported
video), three phases trained, graded against the true actions it never saw."""
import json

import imageio.v3 as iio
import numpy as np

from wmtool.data.store import EpisodeReader


def ok(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else None


def test_genie_learns_from_frames_and_is_graded_on_true_actions(cli, tmp_path):
    data, frames = tmp_path / "pong.h5", tmp_path / "frames.h5"
    ok(cli("collect", "--env", "atari:pong", "--episodes", "2", "--set",
           "env.atari.max_frames=800", "--out", data, "--quiet"))
    out = ok(cli("data", "drop-actions", data, "--out", frames, "--json"))
    assert out["episodes"] == 2
    with EpisodeReader(frames) as reader:
        assert not reader.has_action and reader.act_space is None
    res = cli("train", "--algo", "dreamerv3", "--data", frames, "--size", "debug",
              "--steps", "2", "--run-dir", tmp_path / "dv3", "--quiet")
    assert res.exit_code == 1 and "has no actions" in res.stderr
    run = tmp_path / "genie"
    out = ok(cli("train", "--algo", "genie", "--data", frames, "--size", "debug",
                 "--run-dir", run, "--quiet", "--json"))
    assert out["updates/tokenizer"] == out["updates/lam"] == out["updates/dynamics"] == 4
    report = ok(cli("eval", "--run", run, "--data", data, "--batches", "1", "--json"))
    assert np.isfinite(report["tokenizer_psnr"]) and "delta_psnr_t4" in report
    assert len(report["psnr_inferred"]) == 4
    actions = report["actions"]
    assert 0 <= actions["nmi"] <= 1 and actions["chance"]["majority"] > 0
    # graded against the action a step earlier too: one transition fewer per episode
    assert actions["previous"]["transitions"] == actions["transitions"] - 2
    out = ok(cli("dream", "--run", run, "--actions", "0,3,3,1", "--render",
                 tmp_path / "drive.mp4", "--json"))
    assert out["frames"] == 5 and iio.imread(tmp_path / "drive.mp4").shape[0] == 5
    live = tmp_path / "live.png"
    res = cli("dream", "--run", run, "--interactive", "--render", live, "--json",
              input="1 2x8q7")  # keys outside 1..8 are ignored; q ends before 7
    assert ok(res)["actions"] == [0, 1, 7] and iio.imread(live).shape == (128, 128, 3)
    res = cli("dream", "--run", run, "--actions", "0,9", "--render", tmp_path / "x.gif")
    assert res.exit_code == 1 and "latent actions are 0..7" in res.stderr
    res = cli("eval", "--run", run, "--env", "atari:pong", "--episodes", "1")
    assert res.exit_code == 1 and "genie has no policy for the real env" in res.stderr


def test_import_video_makes_an_observation_only_store(cli, tmp_path):
    video = tmp_path / "clip.gif"
    rng = np.random.default_rng(0)
    iio.imwrite(video, rng.integers(0, 255, (6, 96, 128, 3), dtype=np.uint8))
    out = ok(cli("data", "import-video", video, "--out", tmp_path / "v.h5", "--size", "64",
                 "--json"))
    assert out["episodes"] == 1 and out["steps"] == 5
    with EpisodeReader(tmp_path / "v.h5") as reader:
        episode = next(iter(reader))
        assert episode.obs["image"].shape == (6, 64, 64, 3) and episode.action is None
    res = cli("data", "import-video", tmp_path / "missing.mp4", "--out", tmp_path / "w.h5")
    assert res.exit_code == 1 and "no such video" in res.stderr
    assert not (tmp_path / "w.h5").exists()
