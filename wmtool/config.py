"""Configuration: recipes (YAML data) + size preset + `--set key=value`, strictly typed.

A run's config = recipes/defaults.yaml, then the suite recipe, the algorithm recipe, the
algorithm x suite recipe (with its per-task overrides), the size preset, an experiment recipe
(`--recipe`), then `--set` overrides, in that order. Every key
must already exist in defaults.yaml and keep its type; errors name the valid keys. The result
is frozen: nothing changes it after load.
"""
from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from wmtool.errors import UsageError, WmtoolError


def recipes_dir() -> Path:
    """recipes/ next to the package (editable install or source checkout), or $WMTOOL_RECIPES."""
    shipped = Path(__file__).resolve().parent.parent / "recipes"
    return Path(os.environ.get("WMTOOL_RECIPES", shipped))


class Config(Mapping):
    """Read-only nested mapping with attribute access: cfg.env.id == cfg["env"]["id"]."""

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", {
            k: Config(v) if isinstance(v, Mapping) else (tuple(v) if isinstance(v, list) else v)
            for k, v in data.items()})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # keeps pickling/copying from recursing before _data exists
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name, value):
        raise TypeError("Config is frozen; pass overrides to load() instead")

    def __reduce__(self):
        return Config, (self.to_dict(),)

    def __getitem__(self, key: str) -> Any:
        node: Any = self
        for part in key.split("."):
            node = node._data[part]
        return node

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, Config)
                else (list(v) if isinstance(v, tuple) else v)
                for k, v in self._data.items()}

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.dump())


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"recipe file {path} does not exist", "run `wmtool recipes list`")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise WmtoolError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise WmtoolError(f"recipe {path} must be a mapping of keys to values")
    return data


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _yaml11_float(value: Any) -> Any:
    """YAML 1.1 reads `3e-4` (no dot) as a string; a float key takes it as the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_type(key: str, value: Any, default: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        value = _yaml11_float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):  # YAML reads .inf and .nan as floats
            raise UsageError(f"{source}: {key}={value} is not a finite number",
                             f"give {key} a finite value (default {default!r})")
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    elif isinstance(default, str) and isinstance(value, bool):
        value, ok = ("on" if value else "off"), True  # YAML 1.1 reads on/off as booleans
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise UsageError(f"{source}: {key}={value!r} has type {type(value).__name__}, "
                          f"expected {type(default).__name__} (default {default!r})")
    return value


# Keys renamed since they were introduced: old name -> new. Configs saved by older runs (and
# the old spelling in --set) still load, as the new key.
RENAMED = {"behavior.gamma": "behavior.discount"}  # 0.2.0: one name for the discount


def unknown_key_hint(key: str, flat: dict[str, Any], most: int = 12) -> str:
    """Close spellings, else the keys of the same section (a few), else the sections: a hint
    that fits on a line."""
    close = difflib.get_close_matches(key, list(flat), n=3, cutoff=0.6)
    if close:
        return f"did you mean {', '.join(close)}?"
    section = key.partition(".")[0]
    same = sorted(k for k in flat if k.startswith(section + "."))
    if same and len(same) <= most:
        return f"the keys under {section}. are {', '.join(same)}"
    where = "recipes/defaults.yaml lists every key with its default and meaning"
    if same:
        return f"{section}. has {len(same)} keys; {where}"
    return f"the sections are {', '.join(sorted({k.partition('.')[0] for k in flat}))}; {where}"


def apply(flat: dict[str, Any], overrides: Mapping[str, Any], source: str) -> None:
    """Apply overrides (a nested mapping or dotted keys) to the flat config, strictly."""
    for key, value in flatten(overrides).items():
        key = RENAMED.get(key, key)
        if key not in flat:
            raise UsageError(f"{source}: unknown config key '{key}'", unknown_key_hint(key, flat))
        flat[key] = _check_type(key, value, flat[key], source)


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r} is not key=value", "e.g. --set env.action_repeat=2")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            out[key.strip()] = text
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# Keys a saved run's config.yaml may still hold after the option was removed: a run written
# by an older version still loads, and the value is dropped (it no longer means anything).
RETIRED_KEYS = frozenset({
    "genie.action_dim",  # the latent action model's FSQ size follows genie.actions
})


def without_retired(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config minus RETIRED_KEYS, nested again."""
    return unflatten({k: v for k, v in flatten(saved).items() if k not in RETIRED_KEYS})


def load(layers: list[tuple[str, Mapping[str, Any]]] = (), sets: list[str] = (),
         root: Path | None = None) -> Config:
    """Merge defaults, then each (source name, overrides) layer, then `--set` items."""
    root = root or recipes_dir()
    flat = flatten(read_yaml(root / "defaults.yaml"))
    for source, overrides in layers:
        apply(flat, overrides, source)
    apply(flat, parse_set(sets), "--set")
    check_ranges(flat)
    return Config(unflatten(flat))


# Values outside these bounds fail later and obscurely (batch 0: a ZeroDivisionError), so
# they are refused when the config is made. train.steps may be 0 in a config (World Models
# trains by phases); an online run checks that it has steps to take (engine/session.py).
AT_LEAST = {"seed": 0, "train.steps": 0, "train.batch": 1, "train.length": 1,
            "train.prefill": 0, "train.prefill_updates": 0, "train.envs": 1,
            "train.log_every": 1, "train.eval_every": 0, "train.eval_episodes": 0,
            "train.checkpoint_every": 0, "train.replay_capacity": 1, "env.action_repeat": 1,
            "train.replay_memory_gb": 0,
            "env.time_limit": 0, "collect.workers": 1, "collect.image_chunk": 1,
            "runtime.threads": 0, "behavior.horizon": 1, "controller.workers": 1}
ABOVE_ZERO = ("train.train_ratio", "wm.lr", "actor.lr", "critic.lr")


def check_ranges(flat: Mapping[str, Any]) -> None:
    for key, low in AT_LEAST.items():
        if key in flat and flat[key] < low:
            raise UsageError(f"{key}={flat[key]} is out of range: it must be at least {low}",
                              f"change it in the recipe or with --set {key}=...")
    for key in ABOVE_ZERO:
        if key in flat and not flat[key] > 0:
            raise UsageError(f"{key}={flat[key]} is out of range: it must be above 0",
                              f"change it in the recipe or with --set {key}=...")


def suite_layer(env_id: str, root: Path | None = None) -> list[tuple[str, dict]]:
    """The suite recipe for an env id (recipes/suite/<suite>.yaml), if one exists."""
    root = root or recipes_dir()
    path = root / "suite" / f"{env_id.partition(':')[0]}.yaml"
    return [(str(path), read_yaml(path))] if path.exists() else []


def algo_suite_layers(algo: str, env_id: str, root: Path | None = None) -> list[tuple[str, dict]]:
    """recipes/algo/<algo>__<suite>.yaml, if one exists: an algorithm's values for one suite
    (DreamerV2's Atari vs DMC settings), with its per-task overrides (see with_task_overrides:
    PlaNet's action repeat per DMC domain)."""
    root = root or recipes_dir()
    path = root / "algo" / f"{algo}__{env_id.partition(':')[0]}.yaml"
    return with_task_overrides(str(path), read_yaml(path), env_id) if path.exists() else []


def with_task_overrides(name: str, data: Mapping[str, Any], env_id: str) -> list[tuple[str, dict]]:
    """A layer whose optional `tasks:` section maps task-name prefixes to further overrides
    becomes two layers: itself, then the overrides of the longest prefix of the env's task."""
    data = dict(data)
    tasks = data.pop("tasks", None) or {}
    task = env_id.partition(":")[2]
    layers = [(name, data)]
    matches = [prefix for prefix in tasks if task.startswith(str(prefix))]
    if matches:
        prefix = max(matches, key=len)
        layers.append((f"{name}:tasks.{prefix}", tasks[prefix] or {}))
    return layers


def size_layer(size: str | None, root: Path | None = None,
               algo: str | None = None) -> list[tuple[str, dict]]:
    """A preset of recipes/sizes.yaml; one whose `for:` list lacks `algo` is refused, since
    it would change nothing that algorithm uses."""
    if not size:
        return []
    root = root or recipes_dir()
    presets = read_yaml(root / "sizes.yaml")
    fits = lambda name: not algo or algo in (presets[name] or {}).get("for", [algo])
    if size not in presets or not fits(size):
        what = f"for --algo {algo}" if algo and size in presets else "preset"
        raise UsageError(f"unknown size {what} '{size}'",
                          f"valid: {', '.join(name for name in presets if fits(name))}")
    preset = dict(presets[size] or {})
    preset.pop("for", None)
    return [(f"sizes.yaml:{size}", preset)]


def recipe_layer(recipe: str | None, root: Path | None = None) -> list[tuple[str, dict]]:
    """--recipe takes a path or a name under recipes/exp/ (with or without .yaml)."""
    if not recipe:
        return []
    root = root or recipes_dir()
    path = Path(recipe)
    if not path.exists():
        path = root / "exp" / (recipe if recipe.endswith(".yaml") else recipe + ".yaml")
    return [(str(path), read_yaml(path))]


def compose(flags: Mapping[str, Any] | None = None, recipe: str | None = None,
            sets: list[str] | tuple[str, ...] = (), algo: str | None = None,
            size: str | None = None, root: Path | None = None) -> Config:
    """A run's config: defaults < suite < algorithm < algorithm x suite < size < --recipe <
    CLI flags < --set."""
    root = root or recipes_dir()
    sets = list(sets or ())
    recipe_layers = recipe_layer(recipe, root)
    env_id = parse_set(sets).get("env.id") or (flags or {}).get("env", {}).get("id")
    if env_id is None:
        for _, layer in reversed(recipe_layers):
            env_id = flatten(layer).get("env.id") or env_id
    if env_id is None:
        env_id = read_yaml(root / "defaults.yaml")["env"]["id"]
    layers = suite_layer(str(env_id), root)
    if algo:
        path = root / "algo" / f"{algo}.yaml"
        layers += [(str(path), read_yaml(path))] if path.exists() else []
        layers += algo_suite_layers(algo, str(env_id), root)
    layers += size_layer(size, root, algo)
    for name, layer in recipe_layers:
        layers += with_task_overrides(name, layer, str(env_id))
    if flags:
        layers.append(("command-line flags", flags))
    return load(layers, sets, root)


def require_choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise UsageError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}")
