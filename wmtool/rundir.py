"""Run directories (docs/commands.md): config.yaml, run.json, metrics.jsonl, checkpoints/, replay/.

Every file here is written whole or not at all (a unique temp name, fsync, rename), so a
full disk or a kill leaves the previous version, never half of one. One process at a time
trains a run: `RunLock` holds `.lock` for the session's lifetime.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import time
from pathlib import Path

import yaml

from wmtool import config
from wmtool.errors import WmtoolError, disk_error

CHECKPOINTS = "checkpoints"
# Set by `--trust-run` anywhere on the command line (see wmtool.cli.main).
TRUST = {"on": False}


def write_atomic(file: Path, data: bytes | str) -> None:
    """`file` holds the old content or all of `data`; a failed write leaves no temp file."""
    file = Path(file)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise disk_error(file, exc) from None
        raise


class RunLock:
    """Exclusive while a process trains the run (a POSIX lock, dropped when it dies)."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        self.file = open(path / ".lock", "a+")
        try:
            fcntl.lockf(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            raise WmtoolError(f"{path} is being trained by another process",
                              "wait for it to finish or stop it; nothing was changed") from None

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()


def create(path: Path, cfg, meta: dict) -> Path:
    """A new run in `path`. A directory whose run never got going may be started over:
    one that stopped before storing anything (a config error found once the env or model
    was built), or whose config.yaml is unreadable and that has no checkpoint (its stored
    episodes are kept, and must match the new run's env)."""
    if (path / "config.yaml").exists() and _holds_a_run(path):
        raise WmtoolError(f"{path} already holds a run", f"continue it with --resume "
                          f"{path}, or choose another --run-dir")
    path.mkdir(parents=True, exist_ok=True)
    write_atomic(path / "config.yaml", cfg.dump())
    write_meta(path, {**meta, "created": datetime.datetime.now().isoformat(timespec="seconds"),
                      "status": "running"})
    return path


def _holds_a_run(path: Path) -> bool:
    if list((path / CHECKPOINTS).glob("*.pt")):
        return True
    try:
        load_config(path)
    except WmtoolError:
        return False
    return (path / "replay").exists()


def write_meta(path: Path, meta: dict) -> None:
    write_atomic(Path(path) / "run.json", json.dumps(meta, indent=1, sort_keys=True))


def update_meta(path: Path, **changes) -> None:
    write_meta(path, {**read_meta(path), **changes})


def read_meta(path: Path) -> dict:
    file = Path(path) / "run.json"
    if not file.exists():
        raise WmtoolError(f"{path} is not a wmtool run directory (no run.json)",
                          "pass a directory made by `wmtool train`")
    try:
        meta = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise WmtoolError(f"{file} is damaged (not a JSON object)",
                          "restore it from a backup, or start a new run")
    return meta


def load_config(path: Path) -> config.Config:
    """The run's config.yaml (with what older runs kept in run.json instead: `_legacy`)."""
    return _legacy(read_meta(path), _load_config(path))


def _legacy(meta: dict, cfg: config.Config) -> config.Config:
    """`wmtool imagine` runs made before `controller.score_in` kept real-env scoring in
    run.json (`score_in`, `workers`): the same settings, as config."""
    if meta.get("score_in") != "real":
        return cfg
    return config.load([("saved", cfg.to_dict()), ("run.json", {"controller": {
        "score_in": "real", "workers": meta.get("workers", 2)}})])


def _load_config(path: Path) -> config.Config:
    """The run's config.yaml. A damaged one is restored from the newest intact checkpoint
    (which carries the run's config; the damaged file is kept beside it, and this says so);
    without a checkpoint the run can only be started again."""
    file = Path(path) / "config.yaml"
    cfg, problem = _read_config(file)
    if cfg is not None:
        return cfg
    payload = load_checkpoint(path, required=False, quiet=True) if list(
        (Path(path) / CHECKPOINTS).glob("*.pt")) else None
    if payload is None or not isinstance(payload.get("config"), dict):
        raise WmtoolError(f"{file} is {problem} and the run has no checkpoint to restore it "
                          "from", "start the run again with the same flags and --run-dir "
                          f"{path} (its stored episodes are kept)")
    from wmtool.progress import info

    cfg = config.load([("checkpoint", config.without_retired(payload["config"]))])
    try:
        if file.exists():
            os.replace(file, file.with_name("config.yaml.damaged"))
        write_atomic(file, cfg.dump())
        info(f"{file} was {problem}: restored from the run's newest checkpoint (the damaged "
             "file is config.yaml.damaged)")
    except OSError:  # a read-only copy of a run: use the checkpoint's config, write nothing
        info(f"{file} is {problem}: using the config of the run's newest checkpoint")
    return cfg


def _read_config(file: Path) -> tuple[config.Config | None, str]:
    """(the config, "") or (None, why it cannot be used: "missing", "damaged (...)")."""
    if not file.exists():
        return None, "missing"
    try:
        saved = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return None, "damaged (not YAML)"
    if not isinstance(saved, dict):
        return None, "damaged (not a mapping)"
    try:
        return config.load([(str(file), config.without_retired(saved))]), ""
    except WmtoolError as exc:  # parsable but cut short: a section became null
        return None, f"damaged ({exc.message})"


def env_modules(env_cfg, own_id: str | None = None) -> list[str]:
    """Python modules that making this env imports: `env.imports`, and the module of a
    gymnasium `module:Env` id (not of `own_id`, an env the user named on this command)."""
    modules = list(env_cfg.imports)
    suite, _, task = str(env_cfg.id).partition(":")
    if suite == "gym" and ":" in task and env_cfg.id != own_id:
        modules.append(task.partition(":")[0])
    return modules


def check_trusted(path: Path, env_cfg, own_id: str | None = None) -> None:
    """A run directory can carry code, as a TorchScript file can: the modules its config
    names are imported only when the user says they trust it."""
    modules = env_modules(env_cfg, own_id)
    if modules and not TRUST["on"]:
        raise WmtoolError(f"{path}'s env imports python code when it is made "
                          f"({', '.join(modules)}); "
                          "a run directory can carry code", "add --trust-run if you trust "
                          "where the run came from")


def checkpoint_files(path: Path) -> list[Path]:
    """latest.pt, then the kept step_*.pt copies, newest first."""
    folder = Path(path) / CHECKPOINTS
    return [folder / "latest.pt", *sorted(folder.glob("step_*.pt"), reverse=True)]


def load_checkpoint(path: Path, required: bool = True, quiet: bool = False) -> dict | None:
    """The newest intact checkpoint's payload. A damaged latest.pt (a kill or a full disk
    on an older wmtool) falls back to the newest intact step_*.pt, and says so. None when
    there is none and not `required`."""
    from wmtool import ckpt
    from wmtool.progress import info

    damaged = []
    for file in checkpoint_files(path):
        if not file.exists():
            continue
        try:
            payload = ckpt.load(file)
        except WmtoolError as exc:
            damaged.append(f"{file.name} ({exc.message})")
            continue
        if damaged:
            info(f"{path}: skipped damaged {', '.join(damaged)}; using {file.name}", quiet)
        return payload
    if damaged:
        raise WmtoolError(f"{path}: every checkpoint is damaged: {'; '.join(damaged)}",
                          "start a new run")
    if required:
        try:
            status = read_meta(path).get("status")
        except WmtoolError:
            status = None
        hint = {"failed": "the run failed before its first checkpoint (its error was printed "
                          "then); start a new run",
                "interrupted": "the run was stopped before its first checkpoint; continue it "
                               f"with `wmtool train --resume {path}`"}.get(
            status, "wait for the first checkpoint or lower train.checkpoint_every")
        raise WmtoolError(f"{path} has no checkpoint yet ({CHECKPOINTS}/latest.pt)", hint)
    return None


def last_write(path: Path) -> float | None:
    """When the run last wrote its metrics, replay or checkpoints (a stopped or killed run's
    last sign of work); None when it wrote none of them."""
    path = Path(path)
    files = [path / "metrics.jsonl", *(path / "replay").glob("*.h5"),
             *(path / CHECKPOINTS).glob("*.pt")]
    times = [f.stat().st_mtime for f in files if f.exists()]
    return max(times) if times else None


def pause(stopped: float) -> list[str]:
    """[stopped, now] in run.json's time format: the run's clock stood still in between
    (records count wall time without its pauses)."""
    def stamp(t: float) -> str:
        return datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")
    return [stamp(stopped), stamp(time.time())]


def trim_metrics(path: Path, last_step: int) -> int:
    """Cut metrics.jsonl before its first row past `last_step` (a killed run logged work
    that its resume redoes) or its first torn line; returns how many rows went. Rows are
    appended in step order, so this is one truncation: safe against a kill, and the
    logger's append-mode handle stays valid."""
    file = Path(path) / "metrics.jsonl"
    if not file.exists():
        return 0
    with open(file, "r+b") as fh:
        lines = fh.read().split(b"\n")
        lines = lines[:-1] if lines and not lines[-1] else lines
        keep = next((i for i, line in enumerate(lines) if _step_of(line) > last_step),
                    len(lines))
        if keep < len(lines):
            fh.truncate(sum(len(line) + 1 for line in lines[:keep]))
    return len(lines) - keep


def _step_of(line: bytes) -> float:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # torn or foreign: cut here


def step_counts(counters: dict, action_repeat: int) -> dict[str, int]:
    """Both clocks, spelled out: agent steps (policy decisions, the unit of train.steps and
    every *_every) and env steps (simulator steps: agent steps x env.action_repeat, the
    unit papers report for DMC). Atari's frame skip is inside one env step, as in papers."""
    agent = int(counters.get("agent_steps", 0))
    return {"agent_steps": agent, "env_steps": agent * max(int(action_repeat), 1)}


def migrate_counters(counters: dict) -> dict:
    """Counters saved before agent and env steps were told apart called agent steps
    `env_steps`; read them as agent steps."""
    counters = dict(counters)
    if "agent_steps" not in counters:
        counters["agent_steps"] = counters.pop("env_steps", 0)
    counters.pop("env_steps", None)
    return counters
