"""Training schedules on top of the one env loop (engine/loops.py): online and offline.

Online: random prefill (and, if `train.prefill_updates`, that many updates on it at once),
then acting and learning interleaved by the train ratio, whose unit is replayed steps per
agent step; one update replays batch x length steps, so updates per agent step =
train_ratio / (batch * length). Every finished episode goes to the run's HDF5 store
(durable) and to the in-memory replay (sampled). Offline: replay comes from a dataset and
`train.steps` counts updates; no environment is stepped unless evaluating.

Data-parallel (wmtool/parallel.py): every rank runs this loop with its own envs, store and
replay. Agent steps count over all ranks, and one update replays N x batch x length rows,
so the train ratio keeps its meaning. The clock is summed over ranks at every env step, so
every rank updates, logs, checkpoints and stops at the same step; rank 0 alone writes.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from wmtool import ckpt, parallel, rundir, runtime
from wmtool.behavior.random import RandomPolicy
from wmtool.data.background import BackgroundWriter
from wmtool.data.replay import Replay, check_finite
from wmtool.data.store import EpisodeReader
from wmtool.data.writer import EpisodeWriter
from wmtool.engine import distributed
from wmtool.engine.agent import Agent, AgentPolicy
from wmtool.engine.dream_logging import dream_report
from wmtool.engine.loops import LoopStats, run_episodes
from wmtool.engine.offline_data import offline_replay
from wmtool.engine.plan import Every, RunPlan
from wmtool.engine.walltime import WallTime
from wmtool.logger import Logger
from wmtool.progress import info
from wmtool.rundir import migrate_counters, step_counts


def lr_factor(cfg, ranks: int, updates: int) -> float:
    """The learning rates' multiplier: 1, or with `train.lr_scaling: sqrt` and N ranks
    (batch x N) sqrt(N), reached linearly over `train.lr_warmup` updates."""
    c = cfg.train
    if c.lr_scaling == "none" or ranks == 1:
        return 1.0
    target = math.sqrt(ranks)
    return target if c.lr_warmup <= 0 else 1.0 + (target - 1.0) * min(1.0, updates / c.lr_warmup)


def window(wm, length: int) -> int:
    """Rows to sample for `length` learned steps: plus the history rows a model reads before
    them (TD-MPC2's frame stack); those are context, not counted by the train ratio."""
    return length + wm.history


def derive_phase_columns(replay: Replay, wm, phase: str) -> None:
    """Columns a model computes once per phase from frozen modules (World Models: V's codes
    while M learns); most models need none."""
    replay.derive(wm.phase_columns(phase))


# Runs with fewer updates skip measuring the thread count: its ~10 updates would cost more
# than the choice could save.
TUNE_THREADS_FROM = 200

# Evaluation seeds sit this far above the run seed: training resets use the run seed plus
# small offsets (env index, agent steps so far), so the two never meet in practice.
EVAL_SEED_OFFSET = 2**30


def eval_seed(run_seed: int) -> int:
    """The seed of every evaluation during a run: the same episode starts at each
    evaluation point (a learning curve compares like with like), none of them a training
    start."""
    return run_seed + EVAL_SEED_OFFSET


def metric_means(pending: dict[str, list]) -> dict[str, float]:
    """The mean of each metric since the last log row. Updates leave their metrics on the
    device; they come to the host here, in one transfer per row rather than one per update."""
    on_device = [k for k, v in pending.items() if isinstance(v[0], torch.Tensor)]
    fetched = {}
    if on_device:
        means = torch.stack([torch.stack(pending[k]).float().mean() for k in on_device])
        fetched = dict(zip(on_device, means.tolist()))
    return {k: fetched[k] if k in fetched else float(np.mean(v)) for k, v in pending.items()}


def evaluate(agent: Agent, vec, episodes: int, mode: str = "greedy", seed: int | None = None,
             on_frame: Callable[[np.ndarray], None] | None = None,
             on_episode: Callable[[int], None] | None = None) -> dict:
    """Score the agent in the real env; `on_frame` sees each observation batch,
    `on_episode` the number of episodes finished so far."""
    agent.acting_metrics()  # start the acting costs afresh: report this evaluation's only
    policy = AgentPolicy(agent, mode)
    if on_frame is not None:
        inner = policy.act

        def act(obs):
            on_frame(obs)
            return inner(obs)

        policy.act = act
    finished = [0]

    def count(_episode):
        finished[0] += 1
        on_episode(finished[0])

    stats = run_episodes(vec, policy, episodes=episodes, seed=seed,
                         on_episode=count if on_episode else None)
    r = np.asarray(stats.returns)
    return {"episodes": len(r), "seed": seed, "return_mean": float(r.mean()),
            "return_std": float(r.std()),
            "return_min": float(r.min()), "return_max": float(r.max()),
            "length_mean": float(np.mean(stats.lengths)), **agent.acting_metrics()}


class Trainer:
    """Runs a RunPlan (engine/plan.py) with an agent in a run directory. `evaluator` scores
    the agent in the real env (None: no evaluations); `on_eval` hears each result. Observers
    from outside the engine attach afterwards: `on_progress`, `on_phase`, `thread_probe`."""

    def __init__(self, agent: Agent, run_dir: Path, plan: RunPlan,
                 evaluator: Callable[[], dict] | None = None,
                 on_eval: Callable[[int, dict], None] | None = None, quiet: bool = False):
        self.agent, self.cfg, self.run_dir, self.plan = agent, agent.cfg, Path(run_dir), plan
        self.world = parallel.world()  # rank 0 alone logs, evaluates and writes checkpoints
        self.replay = Replay(agent.obs_space, agent.act_space, self.cfg.train.replay_capacity,
                             parallel.rank_seed(self.cfg.seed),
                             agent.device if self.cfg.train.replay_on_device else None)
        self.counters = {"agent_steps": 0, "updates": 0, "episodes": 0}
        self.logger = Logger(self.run_dir, self.cfg.logger, self.cfg.to_dict(),
                             enabled=self.world.main)
        self.replay_ready = False  # every rank's replay holds a window (online learning)
        self.rank_episodes = 0  # episodes this rank finished (all ranks': counters)
        self.pending = defaultdict(list)  # metrics since the last log row
        self.returns: list[float] = []
        # periodic work on the plan's clock
        self.log_every, self.eval_every = Every(plan.log_every), Every(plan.eval_every)
        self.dream_every, self.checkpoint_every = Every(plan.dream_every), \
            Every(plan.checkpoint_every)
        self.dream_rng = np.random.default_rng(self.cfg.seed + 7)
        self.wall = WallTime()  # its start is the run's (or resume's) start
        self.stopped_together = False  # see agreed()
        best = rundir.read_meta(self.run_dir).get("best_eval")  # kept across --resume
        self.best_eval = best["return_mean"] if best else -float("inf")
        self.quiet = quiet
        self.evaluator, self.on_eval = evaluator, on_eval
        self.on_progress: Callable[[dict], None] | None = None
        # told what happens while no counter moves ("evaluating (10 episodes)", then "")
        self.on_phase: Callable[[str], None] = lambda what: None
        self.stored_steps = 0  # agent steps of the episodes handed to the run's store
        self.prepared = False  # threads measured and hot paths compiled (before the 1st update)
        # (agent, rows, available, world_model, phase) -> the thread choice: the probe of
        # wmtool/launch/threads.py, handed in by the CLI; without one, every core
        self.thread_probe: Callable[..., dict] | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def save(self, keep: bool = True) -> Path:
        """latest.pt, and (`keep`) a step_<N>.pt copy that later saves leave in place."""
        self.agent.check_finite()  # never a checkpoint of weights a non-finite loss moved
        parallel.check_same_weights(self.agent)
        ranks = parallel.gather_objects((ckpt.rng_state(self.replay.rng), self.rank_episodes))
        rngs = [rng for rng, _ in ranks]  # every rank's random streams
        if self.plan.online and self.world.size > 1:
            self.counters["episodes"] = sum(n for _, n in ranks)
        path = self.ckpt_dir / "latest.pt"
        if not self.world.main:
            return path
        ckpt.save(path, self.agent, self.counters, self.replay.rng, rngs)
        if keep:
            step = self.counters["agent_steps"] or self.counters["updates"]
            ckpt.save(self.ckpt_dir / f"step_{step:09d}.pt", self.agent, self.counters,
                      self.replay.rng, rngs)
        rundir.update_meta(self.run_dir, counters=dict(self.counters))  # for `wmtool runs`
        return path

    def save_best(self, step: int, ret: float) -> None:
        """checkpoints/best.pt: the weights of the best evaluation so far (the last one can
        be worse: late learning is not monotonic)."""
        self.best_eval = ret
        ckpt.save(self.ckpt_dir / "best.pt", self.agent, self.counters, self.replay.rng)
        rundir.update_meta(self.run_dir, best_eval={"step": step, "return_mean": ret})

    def restore(self, payload: dict) -> None:
        ckpt.restore_agent(self.agent, payload)
        streams = payload.get("rng_by_rank") or [payload["rng"]]
        ckpt.restore_rng(streams[self.world.rank], self.replay.rng)
        self.counters.update(migrate_counters(payload["counters"]))
        self._restart_clocks()

    def _restart_clocks(self) -> None:
        now = self._clock()
        for job in (self.log_every, self.eval_every, self.dream_every, self.checkpoint_every):
            job.restart(now)

    def load_store(self, path: Path) -> None:
        """Resume from the run's own store: its episodes refill replay and set the step
        counters, so they agree with what is stored (a killed run stored episodes after its
        last checkpoint and lost the ones it had not finished)."""
        stored = [0, 0]  # steps, episodes (a rank killed before its first episode has none)
        if path.exists():
            with EpisodeReader(path) as reader:
                for i, episode in enumerate(reader):
                    check_finite(episode, f"{path}: episode {i}")
                    self.replay.add(episode)
                    self.agent.wm.note_episode(episode.length)
                stored = [reader.num_steps, len(reader)]
        self.stored_steps, self.rank_episodes = stored
        self.counters["agent_steps"], self.counters["episodes"] = parallel.sum_ints(stored)
        self._restart_clocks()

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: count only the steps the stores kept (the episodes under way
        are dropped), then checkpoint. Data-parallel ranks do so together when they stopped
        at the same step (`agreed`); a rank stopped anywhere else (a second signal) keeps
        the last checkpoint and its store."""
        if self.world.size > 1 and not self.stopped_together:
            return
        if self.plan.online and self.plan.world_model:
            self.counters["agent_steps"] = parallel.sum_ints([self.stored_steps])[0]
        self.save()

    def agreed(self, values: list[int]) -> list[int]:
        """`values` summed over the ranks, with every rank's stop request: once any rank
        noted Ctrl-C or SIGTERM, every rank raises it here, at the same step."""
        *summed, sigint, sigterm = parallel.sum_ints([*values, *distributed.stop_flags()])
        stop = distributed.stop_exception(sigint, sigterm)
        if stop is not None:
            self.stopped_together = True
            raise stop
        return summed

    def _clock(self) -> int:
        return self.counters[self.plan.clock]

    # -- bookkeeping -----------------------------------------------------------------------
    def on_episode(self, episode) -> None:
        check_finite(episode, f"{self.cfg.env.id}: an episode")
        self.replay.add(episode)
        self.agent.wm.note_episode(episode.length)
        self.counters["episodes"] += 1
        self.rank_episodes += 1
        self.returns.append(episode.ret)
        self.pending["episode/return"].append(episode.ret)
        self.pending["episode/length"].append(episode.length)

    def prepare(self, rows: dict, phase: str | None) -> dict:
        """Before the first update: the thread count (measured unless `runtime.threads`
        pins it) and compilation; both are printed and recorded in run.json."""
        self.prepared = True
        agent, r, plan = self.agent, self.cfg.runtime, self.plan
        available = runtime.choose_threads(0)
        # only where updates are pure computation: `imagine` may score candidates in real
        # envs (World Models' controller.score_in=real), which a trial must not step
        if r.threads == 0 and agent.device == "cpu" and available > 1 and plan.world_model \
                and plan.planned_updates >= TUNE_THREADS_FROM and self.world.size == 1 \
                and self.thread_probe is not None:
            started = time.perf_counter()
            chosen = self.thread_probe(agent, rows, available, plan.world_model, phase)
            rates = " / ".join(f"{v:g}" for v in chosen.get("updates_per_s_by_threads",
                                                             {}).values())
            counts = " / ".join(chosen.get("updates_per_s_by_threads", {}))
            measured = (f"; {rates} updates/s on {counts} threads"
                        if "updates_per_s_by_threads" in chosen else "")
            info(f"threads: {chosen['threads']} ({chosen['thread_policy']}{measured}, "
                 f"{time.perf_counter() - started:.1f} s; pin with --set runtime.threads=N)",
                 self.quiet)
            rate = chosen.get("expected_updates_per_s")
            if rate:  # the expected time, from this machine's own rate, not a fixed figure
                info(f"expect about {plan.planned_updates / rate / 60:.1f} minutes of updates "
                     f"here ({plan.planned_updates:,} at {rate:g}/s), plus acting and "
                     "evaluation", self.quiet)
        else:
            policy = "runtime.threads" if r.threads else "all cores (not measured for this run)"
            if not r.threads and self.world.size > 1:
                policy = "the node's cores shared by its ranks"
            chosen = {"threads": torch.get_num_threads(), "thread_policy": policy}
        compiled = agent.compile_hot_paths()
        info(f"compile: {agent.compile_reason}" + (f"; {', '.join(compiled)}" if compiled
                                                   else ""), self.quiet)
        record = {**chosen, "device": agent.device, "compile": agent.compile_mode or "off",
                  "compile_reason": agent.compile_reason, "compiled": compiled,
                  "precision": "bf16" if agent.amp else "fp32",
                  "native_bf16": runtime.native_bf16(agent.device),
                  "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "torch": torch.__version__, "ranks": self.world.size}
        if self.world.main:
            rundir.update_meta(self.run_dir, runtime=record)
        return record

    def update(self, phase: str | None = None, batch: int = 0, length: int = 0) -> None:
        c = self.cfg.train
        batch, length = batch or c.batch, length or c.length
        if not self.plan.world_model and self.agent.behavior.starts_at_episode_start:
            rows = self.replay.sample_episode_starts(batch * length)  # e.g. World Models' dream
        else:
            rows = self.replay.sample(batch, window(self.agent.wm, length))
        if not self.prepared:
            self.prepare(rows, phase)
        if self.cfg.train.lr_scaling != "none":
            self.agent.scale_lr(lr_factor(self.cfg, self.world.size, self.counters["updates"]))
        # the update's noise comes from (seed, update): alike on every rank, and the same
        # after a resume
        with parallel.training_step(self.cfg.seed, self.counters["updates"]), \
                self.wall.part("updates"):
            metrics = self.agent.train_step(rows, self.plan.world_model, phase)
        for key, value in metrics.items():
            self.pending[key].append(value)
        self.counters["updates"] += 1

    def log_row(self) -> dict[str, float]:
        row = metric_means(self.pending)
        row.update(self.agent.acting_metrics())
        elapsed = time.perf_counter() - self.wall.started
        steps = step_counts(self.counters, self.cfg.env.action_repeat)
        row.update({"fps/env": steps["env_steps"] / elapsed,
                    "fps/agent": steps["agent_steps"] / elapsed,
                    "fps/updates": self.counters["updates"] / elapsed,
                    "counters/updates": self.counters["updates"],
                    "counters/episodes": self.counters["episodes"],
                    **{f"counters/{k}": v for k, v in steps.items()}, **self.wall.shares()})
        return row

    def gather_episodes(self) -> None:
        """Rank 0's log row sees every rank's finished episodes, and the run's count."""
        if self.world.size == 1:
            return
        parts = parallel.gather_objects((self.pending.pop("episode/return", []),
                                         self.pending.pop("episode/length", []),
                                         self.rank_episodes))
        for i, key in enumerate(("episode/return", "episode/length")):
            merged = [x for part in parts for x in part[i]]
            if merged:
                self.pending[key] = merged
        self.counters["episodes"] = sum(part[2] for part in parts)

    def periodic(self) -> None:
        t, c = self._clock(), self.cfg.train
        if self.log_every.due(t):
            self.agent.check_finite()
            self.gather_episodes()
            if self.world.main:
                self.logger.log(t, self.log_row())
            self.pending.clear()
        if self.evaluator and self.eval_every.due(t):
            self.on_phase(f"evaluating ({c.eval_episodes} episodes)")
            with self.wall.part("evaluation"):
                result = self.evaluator()
            self.on_phase("")
            self.logger.log(t, {f"eval/{k}": v for k, v in result.items()})
            if result["return_mean"] > self.best_eval:
                self.save_best(t, result["return_mean"])
            if self.on_eval:
                self.on_eval(t, result)
        if self.dream_every.due(t):
            if self.world.main:
                with self.wall.part("dreams"):
                    row, media = dream_report(self.agent, self.replay, self.cfg.dream,
                                              self.dream_rng, self.logger.shows_media)
                self.logger.log(t, row)
                self.logger.media(t, media)
        if self.checkpoint_every.due(t):
            with self.wall.part("checkpoints"):
                self.save()
        elif not self.plan.world_model and self.agent.behavior.checkpoint_each_update:
            self.save(keep=False)  # e.g. a CMA-ES generation: costly, never to be lost
        if self.on_progress:
            self.on_progress(self.counters)

    # -- schedules -------------------------------------------------------------------------
    def train_online(self, vec, store_path: Path, env_id: str) -> None:
        plan = self.plan
        store = EpisodeWriter(store_path, env_id, vec.obs_space, vec.act_space,
                              policy=self.agent.algo)
        with BackgroundWriter(store) as writer:
            def on_episode(episode):
                self.on_episode(episode)
                writer.add(episode)
                self.stored_steps += episode.length

            def first_seed(default: int) -> int:
                """Past every seed the store's episodes used: a resumed run meets new
                starts instead of replaying the ones it stored."""
                writer.flush()
                return max(default, store.next_seed)

            seed = parallel.rank_seed(self.cfg.seed)  # rank 0: the run seed
            base = self.counters["agent_steps"]
            prefill = min(plan.prefill, plan.steps)  # a run shorter than its prefill stops there
            if base < prefill:
                def on_prefill(stats: LoopStats):
                    self.advance_clock(base, stats.steps)
                    if self.on_progress:
                        self.on_progress(self.counters)

                start = first_seed(seed)
                run_episodes(vec, RandomPolicy(vec.act_space, start), seed=start,
                             on_episode=on_episode, on_step=on_prefill, cut_at_stop=True,
                             until=lambda: self.counters["agent_steps"] >= prefill)
                base = self.counters["agent_steps"]
                writer.flush()
                self.save()  # a run killed after its prefill resumes from here

            def learn_due():
                due = plan.updates_due(self.counters["agent_steps"])
                while self.counters["updates"] < due and self.replay_ready:
                    self.update()
                    if self.on_progress:  # the update count moves while the steps wait
                        self.on_progress(self.counters)

            def on_step(stats: LoopStats):
                self.advance_clock(base, stats.steps)
                learn_due()
                self.periodic()

            self.advance_clock(base, 0)
            # the prefill's own updates (train.prefill_updates), or those a resumed run's
            # stored steps are owed, all before acting on: say so, the steps stand still
            owed = plan.updates_due(self.counters["agent_steps"]) - self.counters["updates"]
            if owed > 1 and self.replay_ready:
                self.on_phase(f"{owed:,} updates before acting on")
            learn_due()
            self.on_phase("")
            if plan.steps > base:
                run_episodes(vec, AgentPolicy(self.agent, "sample"), on_episode=on_episode,
                             seed=first_seed(seed + 1 + base), on_step=on_step,
                             until=lambda: self.counters["agent_steps"] >= plan.steps,
                             cut_at_stop=True)
        self.save()

    def advance_clock(self, base: int, rank_steps: int) -> None:
        """The run's agent steps: `base` plus every rank's steps since (one all-reduce of two
        integers per env step with N ranks, none with one), and whether every rank's replay
        can give a window; every rank then decides alike when to update, log, save, stop."""
        short = int(len(self.replay) < self.cfg.train.length)
        steps, short = self.agreed([rank_steps, short])
        self.counters["agent_steps"] = base + steps
        self.replay_ready = short == 0

    def train_offline(self, data: Path | str, phases: list[str] | None = None) -> None:
        """Each phase in turn (all, or those in `phases`), from where a resumed run stopped."""
        self.replay, facts = offline_replay(self, data)
        if self.world.main:
            rundir.update_meta(self.run_dir, replay=facts)
        schedule = self.plan.phases
        for phase, steps, batch, length in schedule:  # Phase(name, updates, batch, length)
            if phases and phase not in phases:
                continue
            derive_phase_columns(self.replay, self.agent.wm, phase)
            counter = "updates" if len(schedule) == 1 else f"updates/{phase}"
            self.counters.setdefault(counter, 0)
            while self.counters[counter] < steps:
                self.update(phase, batch, length)
                if counter != "updates":
                    self.counters[counter] += 1
                self.agreed([])  # one process: nothing to share
                self.periodic()
        self.save()

    def close(self) -> None:
        self.logger.close()
