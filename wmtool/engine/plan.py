"""What a training run will do, decided once before it starts: its clock, its phases and
budgets, how many updates it owes per agent step, and when its periodic work falls due.

`RunPlan.of` reads the config, the model's schedule and the run's kind (online or from
data; world model and behaviour, or behaviour only in a frozen model as `wmtool imagine`;
how many data-parallel ranks); the Trainer is built from the plan and keeps no other
schedule. Periodic work (log rows, evaluations, dream media, checkpoints) runs on one
abstraction, `Every`, on the plan's clock: agent steps online, updates offline.
"""
from __future__ import annotations

from dataclasses import dataclass

from wmtool.models.base import Phase


class Every:
    """Work due every `period` ticks of the run's clock (never with a period of 0). It
    counts from the last time it ran, or from where a resumed run restarted the clock."""

    def __init__(self, period: int):
        self.period, self.last = int(period), 0

    def due(self, now: int) -> bool:
        """True (and marked as done at `now`) if a period has passed since it last ran."""
        if self.period and now - self.last >= self.period:
            self.last = now
            return True
        return False

    def restart(self, now: int) -> None:
        self.last = now


def updates_per_agent_step(cfg, ranks: int = 1) -> float:
    """Updates per agent step (the train ratio counts replayed rows, one per agent step;
    with N data-parallel ranks an update replays N batches)."""
    return cfg.train.train_ratio / (cfg.train.batch * cfg.train.length * ranks)


@dataclass(frozen=True)
class RunPlan:
    online: bool          # the clock counts agent steps (else updates, from a dataset)
    world_model: bool     # False: only the behaviour learns, in a frozen model (imagine)
    ranks: int            # data-parallel ranks, each with its share of every batch
    phases: tuple[Phase, ...]  # offline: in training order
    updates_per_agent_step: float  # online: the train ratio in updates
    log_every: int
    eval_every: int
    dream_every: int
    checkpoint_every: int
    steps: int            # online: the agent-step budget
    prefill: int          # online: random agent steps before learning (the ratio counts
    #                       agent steps after them, even where the budget ends sooner)
    prefill_updates: int  # online: updates made at once on the prefill

    @classmethod
    def of(cls, cfg, wm, online: bool, world_model: bool = True, ranks: int = 1) -> RunPlan:
        t = cfg.train
        if world_model:
            phases = tuple(wm.schedule())
        else:  # `imagine`: one behaviour phase of train.steps updates
            phases = (Phase("behavior", t.steps, t.batch, t.length),)
        return cls(online=online, world_model=world_model, ranks=ranks, phases=phases,
                   updates_per_agent_step=updates_per_agent_step(cfg, ranks),
                   log_every=t.log_every, eval_every=t.eval_every, dream_every=cfg.dream.every,
                   checkpoint_every=t.checkpoint_every, steps=t.steps,
                   prefill=t.prefill, prefill_updates=t.prefill_updates)

    @property
    def clock(self) -> str:
        """The counter periodic work and budgets are measured in."""
        return "agent_steps" if self.online else "updates"

    def updates_due(self, agent_steps: int) -> int:
        """Online: the updates a run owes once it has taken `agent_steps` agent steps."""
        return int((agent_steps - self.prefill) * self.updates_per_agent_step) \
            + self.prefill_updates

    @property
    def planned_updates(self) -> int:
        if not self.online:
            return sum(p.updates for p in self.phases)
        return int(max(0, self.steps - self.prefill) * self.updates_per_agent_step) \
            + self.prefill_updates
