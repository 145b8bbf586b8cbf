"""Load a trained run back: its config, metadata, checkpoint and agent (eval, dream, imagine,
export all start here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wmtool import ckpt, config, rundir, spaces
from wmtool.engine.agent import Agent
from wmtool.errors import WmtoolError
from wmtool.runtime import setup_torch


@dataclass
class LoadedRun:
    path: Path
    meta: dict
    cfg: config.Config
    payload: dict
    agent: Agent
    threads: int

    @property
    def env_id(self) -> str:
        return self.meta.get("env") or ""

    def env_config(self, env_id: str | None = None, **env_changes) -> config.Config:
        """The run's config with the env replaced or changed (evaluation, rendering)."""
        env = {"id": env_id or self.env_id, **env_changes}
        if not env["id"]:
            raise WmtoolError(f"{self.path} was trained offline without an env",
                              "pass --env SUITE:TASK")
        cfg = config.load([("run", self.cfg.to_dict()), ("override", {"env": env})])
        rundir.check_trusted(self.path, cfg.env, own_id=env_id)
        return cfg

    def check_spaces(self, obs_space: dict, act_space, where: str) -> None:
        """`where`'s spaces must contain the agent's inputs and equal its action space."""
        mine = self.agent.obs_space
        if {k: obs_space.get(k) for k in mine} != mine or act_space != self.agent.act_space:
            raise WmtoolError(f"{where} does not match the spaces the agent was trained on "
                              f"({spaces.dumps(mine)} -> {spaces.dumps(self.agent.act_space)})",
                              "use the env or data the run was trained with")


def load_run(run: Path, checkpoint: Path | None = None, optimizers: bool = True,
             threads: int | None = None) -> LoadedRun:
    """Rebuild a run's agent from its latest (or the given) checkpoint, in eval mode, on
    `threads` CPU threads (None: the run's own runtime.threads)."""
    meta = rundir.read_meta(run)
    cfg = rundir.load_config(run)
    payload = ckpt.load(checkpoint) if checkpoint else rundir.load_checkpoint(run)
    device, threads = setup_torch(cfg.runtime.threads if threads is None else threads,
                                  cfg.runtime.device)
    obs_space = spaces.loads_obs(payload["obs_space"])
    act_space = spaces.loads_act(payload["act_space"])
    agent = Agent(payload["algo"], obs_space, act_space, cfg, device)
    ckpt.restore_agent(agent, payload, optimizers=optimizers)
    agent.eval()
    return LoadedRun(Path(run), meta, cfg, payload, agent, threads)
