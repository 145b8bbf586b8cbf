"""A training run from start to finish: directory, env, agent, trainer; fresh or resumed.

Data-parallel (wmtool/parallel.py): every rank builds the same session; rank 0 creates and
locks the run directory, evaluates and writes; each rank steps its own envs with its own
seeds into its own store (`store_path`)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from wmtool import ckpt, config, parallel, rundir, spaces
from wmtool.behavior.base import ScoredInRealEnv
from wmtool.data.dataset import Dataset
from wmtool.data.replay import Replay
from wmtool.engine.agent import Agent, NonFiniteLoss
from wmtool.engine.offline_data import free_memory
from wmtool.engine.plan import RunPlan, updates_per_agent_step
from wmtool.engine.train import Trainer, eval_seed, evaluate, lr_factor, step_counts
from wmtool.envs.factory import make_vec
from wmtool.errors import UsageError, WmtoolError
from wmtool.progress import human_bytes, info
from wmtool.runtime import check_bf16, default_run_dir, seed_everything, setup_torch

STORE = Path("replay") / "episodes.h5"


def store_path(rank: int) -> Path:
    """The store a rank writes, inside the run directory: rank 0's is the run's STORE."""
    return STORE if rank == 0 else STORE.with_name(f"episodes.rank{rank}.h5")

NO_ACTIONS = spaces.Space((), "int64", n=1)  # what an action-free dataset's agent is given


class TrainSession:
    def __init__(self, algo: str, cfg, run_dir: Path, meta: dict, quiet: bool):
        self.algo, self.cfg, self.run_dir, self.meta, self.quiet = algo, cfg, run_dir, meta, quiet
        self.data = Path(meta["data"]) if meta.get("data") else None
        self.has_env = bool(meta.get("env"))
        self.world = parallel.world()
        config.require_choice("train.lr_scaling", cfg.train.lr_scaling, ("none", "sqrt"))
        seed_everything(cfg.seed)  # alike on every rank: the same initial weights
        device, threads = setup_torch(cfg.runtime.threads or parallel.rank_threads(),
                                      parallel.rank_device(cfg.runtime.device))
        self.vec = self.eval_vec = self.score_vec = None
        self.lock: rundir.RunLock | None = None  # set by _locked, released by close()
        if self.data is None:
            self.vec = make_vec(cfg.env, cfg.train.envs)
            obs_space, act_space = self.vec.obs_space, self.vec.act_space
        else:
            dataset = Dataset(self.data)
            has_action = dataset.has_action
            obs_space, act_space = dataset.obs_space, dataset.act_space or NO_ACTIONS
        if self.has_env and self.eval_vec is None and self.world.main:
            self.eval_vec = make_vec(cfg.env, 1)
            if self.data is not None and (self.eval_vec.obs_space, self.eval_vec.act_space) != \
                    (obs_space, act_space):
                raise WmtoolError(f"--env {cfg.env.id} has other spaces than {self.data}",
                                  "evaluate in the env the data was collected from")
        self.agent = Agent(algo, obs_space, act_space, cfg, device)
        if self.world.size > 1:
            self._join_ranks()
        if self.data is not None and not has_action and self.agent.wm.needs_actions:
            raise WmtoolError(f"{self.data} has no actions",
                              f"{algo} needs actions; collect with `wmtool collect`, or train "
                              "--algo genie, which learns from frames alone")
        t = cfg.train
        for key, mode in (("eval_mode", t.eval_mode), ("final_eval_mode", t.final_eval_mode)):
            if self.eval_vec is not None and mode and mode not in self.agent.modes:
                raise WmtoolError(f"train.{key}={mode}: {algo} does not act that way",
                                  f"use one of {', '.join(self.agent.modes)}")
        if self.data is None and len(self.agent.wm.phases) > 1:
            raise WmtoolError(f"{algo} trains in stages ({', '.join(self.agent.wm.phases)}) "
                              "from a dataset, not online",
                              f"`wmtool collect --out FILE.h5`, then `wmtool train --algo {algo} "
                              "--data FILE.h5`")
        if self.data is None and cfg.train.steps < 1:
            raise WmtoolError(f"train.steps={cfg.train.steps}: an online run needs at least "
                              "one agent step", "pass --steps N (N >= 1)")
        self.phases = meta.get("phases")
        valid = self.agent.wm.phases
        if self.phases and not set(self.phases) <= set(valid):
            raise WmtoolError(f"--phase {','.join(self.phases)}: {algo} has phases "
                              f"{', '.join(valid)}", f"pass one of {', '.join(valid)}")
        plan = RunPlan.of(cfg, self.agent.wm, online=self.data is None,
                          world_model=meta["mode"] != "imagine", ranks=self.world.size)
        evaluator = None
        if self.eval_vec is not None:
            evaluator = lambda: evaluate(self.agent, self.eval_vec, cfg.train.eval_episodes,
                                         cfg.train.eval_mode, eval_seed(cfg.seed))
        on_eval = lambda step, r: info(
            f"eval at {step:,} {'agent steps' if plan.online else 'updates'}: return "
            f"{r['return_mean']:.1f} ± {r['return_std']:.1f} ({r['episodes']} episodes)", quiet)
        self.trainer = Trainer(self.agent, run_dir, plan, evaluator, on_eval, quiet)
        if self.data is None:
            check_replay_fits(cfg, self.world.size, obs_space, act_space)
        self._announce(device, threads, obs_space, act_space)
        self.started = time.perf_counter()

    # -- construction ----------------------------------------------------------------------
    def _join_ranks(self) -> None:
        """Rank 0's weights on every rank (they start alike; this makes sure), then each
        rank's own random streams for acting."""
        if isinstance(self.agent.behavior, ScoredInRealEnv):
            raise WmtoolError(f"{self.algo}'s behaviour evolves without gradients, which "
                              "data-parallel training does not share between ranks",
                              "train it in one process (drop --nproc)")
        for tensor in self.agent.state_dict().values():
            parallel.broadcast_(tensor)
        seed_everything(parallel.rank_seed(self.cfg.seed))

    @classmethod
    def _locked(cls, path: Path, build, prepare=None):
        """Rank 0 (the only rank in one process) locks the run and `prepare()`s its
        directory; then every rank `build()`s its session, which keeps the lock until
        close()."""
        main = parallel.world().main
        lock = rundir.RunLock(path) if main else None
        prepared = False
        try:
            if prepare is not None and main:
                prepare()
                prepared = True
            parallel.barrier()
            session = build()
        except BaseException as exc:
            if prepared:  # a new run that never started says so (not "running")
                rundir.update_meta(path, status="interrupted" if isinstance(
                    exc, KeyboardInterrupt) else "failed")
            if lock is not None:
                lock.release()
            raise
        session.lock = lock
        return session

    @classmethod
    def create(cls, algo, cfg, run_dir, data, has_env, quiet, phases=None):
        from wmtool.registry import ALGOS, lookup

        lookup(ALGOS, algo, "--algo")  # what the command line names, before any directory
        if cfg.train.amp:  # a recipe in bf16 on a machine without it leaves no directory
            check_bf16(parallel.rank_device(cfg.runtime.device))
        if data:
            dataset = Dataset(data)  # every store exists, and they agree
        else:
            check_online_budget(cfg, parallel.world().size)
        env_id = cfg.env.id if has_env else ""
        label = env_id or f"data:{dataset.name}"
        path = Path(run_dir) if run_dir else default_run_dir(algo, label, cfg.seed)
        path = Path(parallel.broadcast_object(str(path)))  # rank 0's clock names it
        # absolute, so that --resume and imagine work from any directory
        meta = {"algo": algo, "env": env_id, "data": str(Path(data).resolve()) if data else None,
                "mode": "offline" if data else "online", "phases": phases}
        if parallel.world().size > 1:
            meta["world_size"] = parallel.world().size
        return cls._locked(path, lambda: cls(algo, cfg, path, meta, quiet),
                           lambda: rundir.create(path, cfg, meta))

    @classmethod
    def imagine(cls, source: Path, run_dir: Path | None, data: Path | None, env: str | None,
                sets: list[str], steps: int, eval_every: int, eval_episodes: int,
                from_scratch: bool, quiet: bool):
        """A new run that trains behaviour inside `source`'s frozen world model, from real
        start states of `data` (default: the source's replay or dataset); no env steps."""
        meta = rundir.read_meta(source)
        data = data or (source / STORE if (source / STORE).exists() else meta.get("data"))
        data = Path(data).resolve() if data else None
        if not data:
            raise WmtoolError(f"{source} has no replay to start imagination from",
                              "pass --data FILE.h5")
        env_id = env or meta.get("env") or ""
        layers = [("source", rundir.load_config(source).to_dict()),
                  ("imagine", {"train": {"steps": steps, "eval_every": eval_every,
                                         "eval_episodes": eval_episodes,
                                         "log_every": max(1, steps // 20),
                                         "checkpoint_every": max(1, steps // 4)},
                               "dream": {"every": 0},  # the model is frozen: nothing new to see
                               **({"env": {"id": env_id}} if env_id else {})})]
        cfg = config.load(layers, sets)
        if env_id:
            rundir.check_trusted(source, cfg.env, own_id=env)
        path = Path(run_dir) if run_dir else Path(f"{source}-imagine")
        payload = rundir.load_checkpoint(source, quiet=quiet)
        meta = {"algo": meta["algo"], "env": env_id, "data": str(data), "mode": "imagine",
                "source": str(Path(source).resolve()), "from_scratch": from_scratch}
        from wmtool.registry import ALGOS, lookup

        if not lookup(ALGOS, meta["algo"], "--algo").imagine:
            raise WmtoolError(f"{meta['algo']} plans at every step and has no behaviour to "
                              "train in imagination",
                              "evaluate it with `wmtool eval`, or imagine with a dreamer run")

        def build():
            rundir.create(path, cfg, meta)
            return cls(meta["algo"], cfg, path, meta, quiet)

        session = cls._locked(path, build)
        ckpt.restore_agent(session.agent, payload)
        if from_scratch:
            session.agent.reset_behavior()
        session.score_in_real_if_asked()
        return session

    def score_in_real_if_asked(self) -> None:
        """Behaviours that are scored, not differentiated (CMA-ES) can play the real env,
        if their settings ask for it (Behavior.real_scoring)."""
        from wmtool.engine.real_scoring import RealScorer

        scoring = self.agent.behavior.real_scoring(self.cfg)
        if scoring is None:
            return
        if not isinstance(self.agent.behavior, ScoredInRealEnv):
            raise WmtoolError(f"{self.algo}'s behaviour asks to be scored in the real env but "
                              "does not take a real scorer", "mark it ScoredInRealEnv")
        if not self.cfg.env.id or not self.has_env:
            raise WmtoolError("scoring in the real env needs an env", "pass --env SUITE:TASK")
        # a candidate's real rollout ends at the scoring horizon, as a dream rollout does;
        # evaluation keeps the env's own episode length
        env, horizon = self.cfg.env, scoring.horizon
        limit = min(env.time_limit or horizon, horizon)
        self.score_vec = make_vec(config.Config({**env.to_dict(), "time_limit": limit}),
                                  scoring.workers)
        self.agent.behavior.real_scorer = RealScorer(self.agent, self.score_vec, self.cfg.seed)

    @classmethod
    def resume(cls, path: Path, quiet: bool, phases: list[str] | None = None,
               steps: int | None = None):
        """Continue a run; `steps`: a new, larger budget (train.steps) for it."""
        path = Path(path)
        meta = rundir.read_meta(path)  # a clear error for a path that is not a run, first
        ranks = meta.get("world_size", 1)
        if ranks != parallel.world().size:
            raise WmtoolError(f"{path} was trained by {ranks} data-parallel rank(s), this "
                              f"resume has {parallel.world().size}",
                              f"resume with --nproc {ranks} (each rank's store and random "
                              "streams belong to its rank)")
        return cls._locked(path, lambda: cls._resume(path, quiet, phases, steps))

    @classmethod
    def _resume(cls, path: Path, quiet: bool, phases: list[str] | None, steps: int | None):
        stopped = rundir.last_write(path)  # before this resume writes anything
        meta = rundir.read_meta(path)
        cfg = rundir.load_config(path)
        payload = rundir.load_checkpoint(path, required=False, quiet=quiet)
        main = parallel.world().main
        if steps is not None and steps != cfg.train.steps:
            if steps < cfg.train.steps:
                raise UsageError(f"--steps {steps} is below the run's budget of "
                                 f"{cfg.train.steps:,}: a resumed run can only be extended",
                                 f"drop --steps to finish it, or pass more than "
                                 f"{cfg.train.steps:,}")
            info(f"budget extended: train.steps {cfg.train.steps:,} -> {steps:,}", quiet)
            cfg = config.load([("saved", cfg.to_dict()), ("--steps", {"train": {"steps": steps}})])
            if main:
                rundir.write_atomic(path / "config.yaml", cfg.dump())
        if phases:  # e.g. `--phase mdnrnn` after a run that trained only the VAE
            meta["phases"] = phases
            if main:
                rundir.update_meta(path, phases=phases)
        if meta.get("env"):
            rundir.check_trusted(path, cfg.env)
        session = cls(meta["algo"], cfg, path, meta, quiet)
        if payload is not None:
            session.trainer.restore(payload)
        else:  # killed before its first checkpoint: start afresh, keep what it stored
            info(f"{path} has no checkpoint yet: starting afresh from its saved config",
                 quiet)
        if meta.get("mode") == "imagine" or meta.get("score_in"):  # older imagine runs
            session.score_in_real_if_asked()
        if session.data is None:
            session.trainer.load_store(path / store_path(session.world.rank))
        dropped = rundir.trim_metrics(path, session.clock()) if main else 0
        if dropped:
            info(f"dropped {dropped} metrics rows logged after step {session.clock():,} "
                 "(work the resumed run redoes)", quiet)
        info(f"resumed {path} at {session.trainer.counters}", quiet)
        pauses = meta.get("pauses", []) + ([rundir.pause(stopped)] if stopped else [])
        session.update_meta(status="running", counters=dict(session.trainer.counters),
                            pauses=pauses)
        return session

    def update_meta(self, **fields) -> None:
        """run.json, which rank 0 alone writes."""
        if self.world.main:
            rundir.update_meta(self.run_dir, **fields)

    def _announce(self, device, threads, obs_space, act_space) -> None:
        cfg, counts = self.cfg, self.agent.parameter_counts()
        info(f"run {self.run_dir}: {self.algo} on {self.meta.get('env') or self.data} "
             f"({self.meta['mode']})", self.quiet)
        info(f"device {device}, {threads} torch threads; "
             f"{spaces.dumps(obs_space)} -> {spaces.dumps(act_space)}", self.quiet)
        info("parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), self.quiet)
        if self.data is None:
            rows = online_replay_rows(cfg, self.world.size)
            per_step = Replay.bytes_per_step(obs_space, act_space)
            info(f"replay: up to {rows:,} steps x {per_step:,} B = "
                 f"{rows * per_step / 2**20:,.1f} MiB in memory", self.quiet)
            repeat = max(cfg.env.action_repeat, 1)
            info(f"budget {cfg.train.steps:,} agent steps = {cfg.train.steps * repeat:,} env "
                 f"steps (action repeat {repeat}); the first {cfg.train.prefill:,} agent steps "
                 "act randomly", self.quiet)
            n = self.world.size
            ranks = f"{n} ranks x " if n > 1 else ""
            info(f"train ratio {cfg.train.train_ratio:g} replayed steps per agent step / "
                 f"({ranks}batch {cfg.train.batch} x length {cfg.train.length}) = "
                 f"{updates_per_agent_step(cfg, n):.4g} updates per agent step", self.quiet)
        if self.world.size > 1:
            info(self._parallel_summary(), self.quiet)

    def _parallel_summary(self) -> str:
        """What data parallelism changes: the batch, and the learning rates if scaled."""
        c, n = self.cfg.train, self.world.size
        rates = ", ".join(f"{name} {lr:g}" for name, lr in self.agent.base_lrs.items())
        if c.lr_scaling == "sqrt":
            warm = f" after a {c.lr_warmup:,}-update warm-up" if c.lr_warmup > 0 else ""
            rates += f" (x sqrt({n}) = x{lr_factor(self.cfg, n, 10**12):.3g}{warm})"
        return (f"data-parallel: {n} ranks ({parallel.backend()}), each its own envs and "
                f"replay; effective batch {n} x {c.batch} = {n * c.batch} sequences; learning "
                f"rates {rates}")

    # -- running ---------------------------------------------------------------------------
    @property
    def total(self) -> int:
        if self.data is None:
            return self.cfg.train.steps
        return sum(p.updates for p in self.trainer.plan.phases
                   if not self.phases or p.name in self.phases)

    def clock(self) -> int:
        return self.trainer.counters[self.trainer.plan.clock]

    def status(self) -> str:
        c, elapsed = self.trainer.counters, time.perf_counter() - self.started
        recent = self.trainer.returns[-10:]
        last = f"return {np.mean(recent):.1f}" if recent else "return -"
        return f"{c['updates']} upd ({c['updates'] / max(elapsed, 1e-9):.2f}/s)  {last}"

    def run(self) -> dict:
        try:
            if self.data is None:
                self.trainer.train_online(self.vec, self.run_dir / store_path(self.world.rank),
                                          self.cfg.env.id)
            else:
                self.trainer.train_offline(self.data, self.phases)
        except KeyboardInterrupt:
            self.trainer.interrupted()
            self.update_meta(status="interrupted")
            raise
        except NonFiniteLoss as exc:
            self.update_meta(status="failed")
            saved = rundir.checkpoint_files(self.run_dir)[0].exists()
            raise NonFiniteLoss(exc.message, f"{exc.hint}; " + (
                "its last checkpoint is intact" if saved else "it has no checkpoint yet")) from None
        except Exception:
            self.update_meta(status="failed")
            raise
        result = {"run_dir": str(self.run_dir), "algo": self.algo, **self.trainer.counters,
                  **step_counts(self.trainer.counters, self.cfg.env.action_repeat),
                  "seconds": round(time.perf_counter() - self.started, 2),
                  "return_recent": float(np.mean(self.trainer.returns[-10:]))
                  if self.trainer.returns else None}
        if self.eval_vec is not None and self.cfg.train.eval_episodes > 0:
            c = self.cfg.train
            self.trainer.on_phase(f"final evaluation ({c.eval_episodes} episodes)")
            result["eval"] = evaluate(self.agent, self.eval_vec, c.eval_episodes,
                                      c.final_eval_mode or c.eval_mode, eval_seed(self.cfg.seed))
            self.trainer.on_phase("")
            # `eval/final` tells records this row from the periodic ones (its mode may differ)
            self.trainer.logger.log(self.clock(), {"eval/final": 1.0, **{
                f"eval/{k}": v for k, v in result["eval"].items()}})
            if result["eval"]["return_mean"] > self.trainer.best_eval:
                self.trainer.save_best(self.clock(), result["eval"]["return_mean"])
        best = rundir.read_meta(self.run_dir).get("best_eval")
        if best:
            result["best_eval"] = {**best, "checkpoint": str(self.trainer.ckpt_dir / "best.pt")}
        self.update_meta(status="finished", last_eval=result.get("eval", {}).get("return_mean"))
        return result

    def close(self) -> None:
        self.trainer.close()
        for vec in (self.vec, self.eval_vec, self.score_vec):
            if vec is not None:
                vec.close()
        if self.lock is not None:
            self.lock.release()


def online_replay_rows(cfg, ranks: int) -> int:
    """About the most rows one rank's replay comes to hold in an online run: its share of
    the agent steps (each episode's first observation adds one row more)."""
    return min(cfg.train.replay_capacity, -(-cfg.train.steps // ranks))


def check_replay_fits(cfg, ranks: int, obs_space, act_space) -> None:
    """Refuse at the start an online run whose replay would outgrow the memory free now
    (all ranks' replays on this machine), instead of an out-of-memory kill halfway."""
    rows = online_replay_rows(cfg, ranks)
    per_row = Replay.bytes_per_step(obs_space, act_space)
    need, free = rows * per_row * ranks, free_memory()
    if need > 0.9 * free:
        fits = max(cfg.train.length, int(0.8 * free / per_row / ranks))
        raise UsageError(f"replay would need {human_bytes(need)} for {rows:,} steps of "
                         f"{per_row:,} B{f' on each of {ranks} ranks' if ranks > 1 else ''}, "
                         f"but {human_bytes(free)} of memory is free",
                         f"--set train.replay_capacity={fits} (the newest steps are kept), "
                         "or fewer --steps")


def check_online_budget(cfg, ranks: int) -> None:
    """Refuse an online run that could never make an update: its whole budget replays fewer
    rows than one batch (a batch of 10^12 once "finished" with 0 updates), or its sequences
    are longer than replay keeps."""
    t = cfg.train
    if t.steps < 1:
        return  # TrainSession says so itself, with its own fix
    if t.length > t.replay_capacity:
        raise UsageError(f"train.length={t.length} exceeds train.replay_capacity="
                         f"{t.replay_capacity}: no sequence fits in replay",
                         "lower train.length or raise train.replay_capacity")
    if t.steps * updates_per_agent_step(cfg, ranks) < 1 and t.prefill_updates == 0:
        raise UsageError(f"train.train_ratio={t.train_ratio:g} over train.batch={t.batch} x "
                         f"train.length={t.length} makes less than one update in "
                         f"{t.steps:,} agent steps",
                         "lower train.batch or train.length, or raise train.train_ratio")
