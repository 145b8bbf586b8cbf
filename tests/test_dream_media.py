"""Dreams in the dashboards: while training, every `dream.every` steps, the open-loop dream
video (models that decode) or the predicted-vs-real traces plot (TD-MPC2) reach TensorBoard
and wandb (offline); read back from the event file and from wandb's run directory."""
import io
import json

import imageio.v3 as iio
import pytest
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

MEDIA = ["--set", "logger.tensorboard=true", "--set", "logger.wandb=true"]


def images_in_tensorboard(run) -> dict:
    acc = EventAccumulator(str(run / "tb"), size_guidance={IMAGES: 0})
    acc.Reload()
    return {tag: acc.Images(tag) for tag in acc.Tags()[IMAGES]}


def wandb_files(run, kind: str, suffix: str) -> list:
    return sorted(run.glob(f"wandb/offline-run-*/files/media/{kind}/**/*{suffix}"))


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.mark.slow
def test_open_loop_dream_videos_reach_tensorboard_and_wandb(cli, tmp_path, offline_wandb):
    run = tmp_path / "run"
    res = cli("train", "--algo", "dreamerv3", "--env", "dmc:cartpole-balance", "--obs",
              "pixels", "--size", "debug", "--steps", "120", "--set", "train.prefill=80",
              "--set", "train.length=8", "--set", "train.batch=4", "--set",
              "train.train_ratio=64", "--set", "env.time_limit=60", "--set",
              "train.eval_episodes=0", "--set", "dream.every=20", "--set", "dream.context=3",
              "--set", "dream.horizon=3", "--set", "dream.sequences=2", *MEDIA,
              "--run-dir", run, "--json")
    assert res.exit_code == 0, res.output
    videos = images_in_tensorboard(run)["dream/open_loop"]
    assert [v.step for v in videos] == [81, 101]  # after the 80 prefill steps, every 20
    frames = iio.imread(io.BytesIO(videos[-1].encoded_image_string), index=None,
                        extension=".gif")
    assert len(frames) == 6  # context 3 + horizon 3, truth / prediction / error tiles
    gifs = wandb_files(run, "videos", ".gif")
    assert len(gifs) == 2 and len(iio.imread(gifs[-1], index=None)) == 6
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("dream/image/error_h1" in r for r in rows)


@pytest.mark.slow
def test_a_model_without_decoder_logs_its_traces_plot(cli, tmp_path, offline_wandb):
    run = tmp_path / "run"
    res = cli("train", "--algo", "tdmpc2", "--env", "gym:Pendulum-v1", "--size", "debug",
              "--steps", "90", "--set", "train.prefill=60", "--set", "train.batch=8",
              "--set", "train.train_ratio=32", "--set", "env.time_limit=30", "--set",
              "train.eval_episodes=0", "--set", "dream.every=30", "--set", "dream.context=6",
              "--set", "dream.horizon=4", "--set", "dream.sequences=2", *MEDIA,
              "--run-dir", run, "--json")
    assert res.exit_code == 0, res.output
    plots = images_in_tensorboard(run)["dream/latent_traces"]
    assert len(plots) >= 1
    picture = iio.imread(io.BytesIO(plots[-1].encoded_image_string))
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[0] > 100
    assert wandb_files(run, "images", ".png")


@pytest.mark.parametrize("name", ["dream.mp4", "dream.gif"])
def test_an_interrupted_video_leaves_nothing_under_its_name(tmp_path, monkeypatch, name):
    """Ctrl-C while the encoder writes (here: after it wrote 10 bytes) removes the partial
    file; an older video of the same name stays as it was; a finished one is a real video."""
    import imageio.v2 as imageio
    import numpy as np

    from wmtool.video import write_video

    frames = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.full((16, 16, 3), 80,
                                                                          np.uint8)
    out = tmp_path / name
    out.write_bytes(b"older video")
    real = {"mp4": imageio.mimwrite, "gif": imageio.mimsave}

    def interrupted(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\0" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "mimwrite", interrupted)
    monkeypatch.setattr(imageio, "mimsave", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_video(out, frames)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert out.read_bytes() == b"older video"
    monkeypatch.setattr(imageio, "mimwrite", real["mp4"])
    monkeypatch.setattr(imageio, "mimsave", real["gif"])
    write_video(out, frames)
    assert iio.imread(out, index=None).shape[0] == 3
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_dream_curves_have_labelled_axes_and_paired_colours():
    """Every panel names its quantity, the bottom ones the step; each sequence's truth and
    prediction share a hue (dark solid, light dashed) and sequences differ."""
    import numpy as np

    from wmtool.engine.dream import Dream
    from wmtool.render import CurveFigure

    rng = np.random.default_rng(0)
    dream = Dream(context=3, truth={"vector": rng.normal(size=(2, 6, 2))},
                  pred={"vector": rng.normal(size=(2, 6, 2))},
                  reward_truth=rng.normal(size=(2, 6)), reward_pred=rng.normal(size=(2, 6)),
                  cont_pred=rng.uniform(size=(2, 6)), vector_keys=["vector"])
    figure = CurveFigure(dream)
    try:
        axes = [ax for ax in figure.fig.axes if ax.axison]
        assert all(ax.get_ylabel() for ax in axes)
        assert axes[-1].get_xlabel() == "step"
        vector0 = axes[0].lines[1:]  # after the dotted context line
        truth0, model0, truth1 = vector0[0], vector0[1], vector0[2]
        assert truth0.get_linestyle() == "-" and model0.get_linestyle() == "--"
        from matplotlib import colormaps, colors

        pairs = colormaps["tab20"].colors  # (dark, light) of one hue, pair after pair
        rgb = lambda line: tuple(colors.to_rgb(line.get_color()))
        assert (rgb(truth0), rgb(model0), rgb(truth1)) == (pairs[0], pairs[1], pairs[2])
        assert [line.get_label() for line in vector0[:2]] == ["seq 0 truth", "seq 0 model"]
        assert figure.fig.legends  # which colour is which sequence
    finally:
        figure.close()
