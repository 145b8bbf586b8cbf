"""Minari datasets in and out (the Farama convention for offline RL; D4RL lives on there).

The layouts are close: one group per episode, observations T+1, actions, rewards,
terminations and truncations T. Spaces convert both ways: Box, Discrete and Dict (nested
keys join with "/"); uint8 HxWx3 boxes are images, other boxes become flat float32 vectors and
discrete observations one-hot vectors. Continuous actions are wmtool's [-1, 1] on export, and
a bounded Box is rescaled to [-1, 1] on import. Episode seeds travel in Minari's episode
metadata (a seed beyond int64, which Minari draws for unseeded resets, is stored as -1,
"unknown"). Images are written raw: Minari 0.5 JPEG-encodes them unless told not to, and a
lossy copy of a dataset is not the dataset.
"""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

from wmtool import spaces
from wmtool.data.episode import Episode
from wmtool.data.store import EpisodeReader
from wmtool.data.writer import EpisodeWriter, new_store, refuse_existing
from wmtool.errors import WmtoolError


def _minari():
    try:
        import minari
    except ImportError:
        raise WmtoolError("Minari is not installed", "pip install 'wmtool[minari]'") from None
    return minari


@contextlib.contextmanager
def datasets_root(path: Path):
    """Minari finds datasets under MINARI_DATASETS_PATH."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(path).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


# -- out ---------------------------------------------------------------------------------------
def gym_obs_space(obs_space: dict[str, spaces.Space]):
    import gymnasium.spaces as gs

    boxes = {k: gs.Box(0, 255, s.shape, np.uint8) if s.is_image else
             gs.Box(-np.inf, np.inf, s.shape, np.float32) for k, s in obs_space.items()}
    return gs.Dict(boxes)


def gym_act_space(act_space: spaces.Space):
    import gymnasium.spaces as gs

    if act_space.discrete:
        return gs.Discrete(int(act_space.n))
    return gs.Box(-1.0, 1.0, act_space.shape, np.float32)


def default_id(env_id: str, store: Path) -> str:
    task = re.sub(r"[^A-Za-z0-9_-]+", "_", env_id.partition(":")[2] or "env")
    task = re.sub(r"-v\d+$", "", task)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", Path(store).stem)
    return f"wmtool/{task}/{name}-v0"


def export_minari(store: Path, out: Path, dataset_id: str | None = None) -> dict:
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    with EpisodeReader(store) as reader:
        if not reader.has_action:
            raise WmtoolError(f"{store} holds observations only (no actions or rewards to "
                              "record)", "Minari datasets need actions: export a store "
                              "written by `wmtool collect` or a training run")
        env_id, obs_space, act_space = reader.env_id, reader.obs_space, reader.act_space
        dataset_id = dataset_id or default_id(env_id, store)
        buffers = [EpisodeBuffer(id=i, seed=e.seed if e.seed >= 0 else None,
                                 observations={k: v for k, v in e.obs.items()},
                                 actions=e.action, rewards=e.reward,
                                 terminations=e.terminated, truncations=e.truncated,
                                 infos={})
                   for i, e in enumerate(reader)]
    suite, _, task = env_id.partition(":")
    with datasets_root(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari's advice on authorship metadata
        try:
            dataset = minari.create_dataset_from_buffers(
                dataset_id, buffers, env=task if suite == "gym" else None,
                observation_space=gym_obs_space(obs_space),
                action_space=gym_act_space(act_space), algorithm_name="wmtool",
                description=f"exported by wmtool from {Path(store).name} ({env_id}); "
                            "continuous actions are in [-1, 1]",
                data_format="hdf5", jpeg_encoding=False)
        except ValueError as exc:
            raise WmtoolError(f"Minari refused the dataset: {exc}",
                              "pass --id NAMESPACE/ENV/NAME-vN not yet in --out") from None
    return {"dataset_id": dataset_id, "out": str(out), "episodes": dataset.total_episodes,
            "steps": dataset.total_steps}


# -- in ----------------------------------------------------------------------------------------
def flatten_space(space, name: str = "") -> list[tuple[str, tuple, object]]:
    """(wmtool key, path into the observation, gymnasium leaf space)."""
    import gymnasium.spaces as gs

    if isinstance(space, gs.Dict):
        return [leaf for key, inner in space.spaces.items()
                for leaf in flatten_space(inner, f"{name}/{key}" if name else key)]
    if isinstance(space, (gs.Box, gs.Discrete)):
        return [(name, (), space)]
    raise WmtoolError(f"Minari observation space {space} is not supported",
                      "datasets with Box, Discrete or Dict observations can be imported")


def leaf_space(space) -> tuple[spaces.Space, str]:
    import gymnasium.spaces as gs

    if isinstance(space, gs.Discrete):
        return spaces.vector(int(space.n)), "onehot"
    if space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[2] == 3:
        return spaces.image(*space.shape[:2]), "image"
    return spaces.vector(int(np.prod(space.shape))), "vector"


def import_action_space(space):
    import gymnasium.spaces as gs

    if isinstance(space, gs.Discrete):
        start = int(space.start)
        return spaces.discrete(int(space.n)), lambda a: np.asarray(a, np.int64) - start
    if isinstance(space, gs.Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise WmtoolError("the dataset's Box actions are unbounded",
                              "wmtool needs bounded continuous actions to map them to [-1, 1]")
        n = int(np.prod(space.shape))
        return spaces.continuous(n), lambda a: (
            2.0 * (np.asarray(a, np.float64).reshape(len(a), n) - low.ravel())
            / (high - low).ravel() - 1.0).astype(np.float32)
    raise WmtoolError(f"Minari action space {space} is not supported",
                      "datasets with Discrete or Box actions can be imported")


def open_dataset(source: str):
    """A local Minari dataset directory, or a dataset id (a local copy first, else Minari's
    remote); Minari's own errors become one line naming the source and the fix."""
    minari = _minari()
    path = Path(source)
    looks_like_path = path.exists() or "/" in source and (source.startswith((".", "/", "~"))
                                                           or path.parent.exists())
    try:
        if path.exists():
            data = path / "data" if (path / "data").is_dir() else path
            return minari.MinariDataset(data)
        if looks_like_path:
            raise WmtoolError(f"{source}: no such Minari dataset directory",
                              "check the path, or pass a dataset id such as "
                              "D4RL/door/human-v2")
        return minari.load_dataset(source, download=True)
    except WmtoolError:
        raise
    except Exception as exc:  # Minari raises ValueError, KeyError, FileNotFoundError, ...
        text = (str(exc).splitlines() or [type(exc).__name__])[0]
        where = "directory" if path.exists() else "id"
        raise WmtoolError(f"cannot open Minari dataset {where} {source} ({text})",
                          "pass a directory written by Minari (it holds data/) or a dataset "
                          "id of the form namespace/name-vN; `minari list remote` lists "
                          "the published ones") from None


def import_minari(source: str, out: Path) -> dict:
    refuse_existing(out)  # before a download
    dataset = open_dataset(source)
    leaves = flatten_space(dataset.observation_space)
    converted = {key or "vector": leaf_space(space) for key, _, space in leaves}
    obs_space = {k: s for k, (s, _) in converted.items()}
    act_space, to_wmtool = import_action_space(dataset.action_space)
    spec = dataset.spec.env_spec
    env_id = f"gym:{spec.id}" if spec is not None else f"minari:{dataset.spec.dataset_id}"
    seeds = {int(m["id"]): m.get("seed") for m in dataset.storage.get_episode_metadata(
        dataset.episode_indices)}
    count = steps = 0
    with new_store(out) as partial, EpisodeWriter(
            partial, env_id, obs_space, act_space,
            policy=f"minari:{dataset.spec.dataset_id}") as writer:
        for ep in dataset.iterate_episodes():
            obs = {}
            for (key, _, _), (name, (_, kind)) in zip(leaves, converted.items()):
                value = ep.observations
                for part in key.split("/") if key else []:
                    value = value[part]
                value = np.asarray(value)
                if kind == "onehot":
                    value = np.eye(obs_space[name].shape[0], dtype=np.float32)[value]
                elif kind == "vector":
                    value = value.reshape(len(value), -1).astype(np.float32)
                obs[name] = value
            seed = seeds.get(int(ep.id))
            if seed is not None and not 0 <= int(seed) < 2**63:
                seed = None  # Minari draws 64-bit seeds for unseeded resets; ours are int64
            writer.add(Episode(obs=obs, action=to_wmtool(ep.actions),
                               reward=np.asarray(ep.rewards, np.float32),
                               terminated=np.asarray(ep.terminations, bool),
                               truncated=np.asarray(ep.truncations, bool),
                               seed=-1 if seed is None else int(seed)))
            count, steps = count + 1, steps + len(ep.rewards)
    return {"dataset_id": dataset.spec.dataset_id, "out": str(out), "episodes": count,
            "steps": steps, "env": env_id}
