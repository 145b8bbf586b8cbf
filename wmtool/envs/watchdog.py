"""A deadline on each call into an environment, for `wmtool envs check`: an env that blocks
(a simulator waiting on a socket, a deadlock) ends the check with one line naming the call,
instead of a check that never returns.

A thread watches the call under way and, past its deadline, prints the error and leaves
with os._exit(1): the blocked call cannot be interrupted from Python. A call stuck in C code
that holds the GIL starves that thread, so faulthandler (a C thread) also ends the process
a little later, printing where it was stuck.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import time

# how much later than the deadline faulthandler steps in, if the watching thread could not
BACKSTOP_S = 15.0


class CallDeadline:
    def __init__(self, env_id: str, seconds: float):
        self.env_id, self.seconds = env_id, seconds
        self._call: tuple[str, float] | None = None
        thread = threading.Thread(target=self._watch, name="env-call-deadline", daemon=True)
        thread.start()

    def call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs) under the deadline; `what` names it in the error."""
        self._call = (what, time.monotonic())
        with contextlib.suppress(ValueError, OSError, AttributeError):  # no real stderr
            faulthandler.dump_traceback_later(self.seconds + BACKSTOP_S, exit=True,
                                              file=sys.__stderr__)
        try:
            return fn(*args, **kwargs)
        finally:
            faulthandler.cancel_dump_traceback_later()
            self._call = None

    def _watch(self) -> None:
        while True:
            time.sleep(min(0.5, self.seconds / 4))
            call = self._call
            if call is not None and time.monotonic() - call[1] > self.seconds:
                sys.stderr.write(f"error: {self.env_id} did not return from {call[0]} within "
                                 f"{self.seconds:g} s; fix the env (it blocks), or raise "
                                 "--timeout if it is only slow\n")
                sys.stderr.flush()
                os._exit(1)


class Watched:
    """An env whose reset() and step() run under a CallDeadline; everything else passes."""

    def __init__(self, env, deadline: CallDeadline, label: str = ""):
        self._env, self._deadline, self._label = env, deadline, label
        self._steps = 0

    def reset(self, *args, **kwargs):
        self._steps = 0
        return self._deadline.call(f"{self._label}reset()", self._env.reset, *args, **kwargs)

    def step(self, *args, **kwargs):
        self._steps += 1
        return self._deadline.call(f"{self._label}step() (step {self._steps} of an episode)",
                                   self._env.step, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._env, name)
