"""Where an offline run samples from: its dataset loaded into memory, or streamed from disk
(`train.replay`: memory | stream | auto), and the memory replay may take.

auto streams when the dataset's rows would take more than `train.replay_memory_gb` (0: half of
the memory the machine, or the process's cgroup, has free). In memory, a dataset with more
rows than `train.replay_capacity` keeps only its newest: the run says so, with the fix, and
run.json's `replay` holds the counts either way.
"""
from __future__ import annotations

from pathlib import Path

from wmtool import config, parallel
from wmtool.data.dataset import Dataset
from wmtool.data.replay import Replay, check_finite
from wmtool.data.stream import StreamReplay
from wmtool.errors import UsageError
from wmtool.progress import human_bytes, info, warn

GB = 2**30


def _cgroup_free() -> int | None:
    """Bytes this process's cgroup may still take, when it sets a memory limit (cgroup v2,
    or v1's memory controller)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            files = ("memory.max", "memory.current")
            root = Path("/sys/fs/cgroup") / path.lstrip("/")
        elif "memory" in controllers.split(","):
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            root = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        else:
            continue
        try:
            limit = (root / files[0]).read_text().strip()
            if limit != "max" and int(limit) < 2**60:  # v1 says "no limit" with a huge number
                return int(limit) - int((root / files[1]).read_text())
        except (OSError, ValueError):
            continue
    return None


def free_memory() -> int:
    """Bytes the machine has available (MemAvailable), or the cgroup allows if less."""
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text()
                       .splitlines())
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import os

        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = _cgroup_free()
    return min(available, cgroup) if cgroup is not None else available


def memory_budget(train_cfg) -> int:
    """Bytes replay may take in memory: train.replay_memory_gb, or half of what is free."""
    if train_cfg.replay_memory_gb > 0:
        return int(train_cfg.replay_memory_gb * GB)
    return free_memory() // 2


def offline_replay(trainer, data) -> tuple[Replay | StreamReplay, dict]:
    """The replay an offline run samples from, filled (memory) or opened (stream), and the
    facts for run.json. Keeps `trainer.replay`'s generator, so a resumed run goes on."""
    cfg, agent, quiet = trainer.cfg, trainer.agent, trainer.quiet
    config.require_choice("train.replay", cfg.train.replay, ("memory", "stream", "auto"))
    dataset = Dataset(data)
    per_row = Replay.bytes_per_step(agent.obs_space, agent.act_space)
    need, budget = dataset.num_rows * per_row, memory_budget(cfg.train)
    held = min(dataset.num_rows, cfg.train.replay_capacity)
    mode = cfg.train.replay
    if mode == "auto":
        mode = "stream" if held * per_row > budget else "memory"
    elif mode == "memory" and held * per_row > 0.9 * free_memory():
        raise UsageError(f"the dataset's {held:,} rows need {human_bytes(held * per_row)} in "
                         f"memory, but {human_bytes(free_memory())} is free",
                         "--set train.replay=stream reads it from disk (or lower "
                         "train.replay_capacity: the newest rows are kept)")
    facts = {"mode": mode, "dataset_rows": dataset.num_rows, "stores": len(dataset.paths),
             "memory_budget_gb": round(budget / GB, 2)}
    for length in dataset.episode_lengths():
        agent.wm.note_episode(int(length))
    if mode == "stream":
        world = parallel.world()
        replay = StreamReplay(dataset, agent.act_space, rng=trainer.replay.rng,
                              rank=world.rank, ranks=world.size)
        info(f"replay: streaming {dataset.num_rows:,} rows ({human_bytes(need)}) from "
             f"{len(dataset.paths)} store(s) on disk (train.replay={cfg.train.replay}; memory "
             f"budget {human_bytes(budget)}, train.replay_memory_gb)", quiet)
        return replay, {**facts, "rows_held": len(replay)}
    replay = trainer.replay
    for where, episode in dataset.episodes():
        check_finite(episode, where)
        replay.add(episode)
    facts["rows_held"] = len(replay)
    info(f"replay: {len(replay):,} rows ({human_bytes(len(replay) * per_row)}) in memory "
         f"from {len(dataset.paths)} store(s) (train.replay={cfg.train.replay}; memory budget "
         f"{human_bytes(budget)}, train.replay_memory_gb)", quiet)
    if len(replay) < dataset.num_rows:
        warn(f"replay keeps the newest {len(replay):,} of the dataset's {dataset.num_rows:,} "
             f"rows (train.replay_capacity={cfg.train.replay_capacity:,}); to train on all, "
             f"--set train.replay_capacity={dataset.num_rows} (about {human_bytes(need)} in "
             "memory) or --set train.replay=stream (read from disk)")
    return replay, facts
