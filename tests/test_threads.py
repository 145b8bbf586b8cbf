"""The thread probe (wmtool/launch/threads.py) cannot be fooled by a busy machine: a reading taken
while another process holds a core is seen (from /proc/stat), taken again, and discarded,
and the probe stays within its few seconds."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wmtool.launch.threads import MANY_THREADS_FROM, decide, suspect

ROOT = Path(__file__).resolve().parents[1]


def test_a_busy_reading_is_discarded_and_the_quiet_one_kept():
    quiet = {1: 10.0, 2: 14.0}
    assert decide(quiet, 0.05, 2) == (2, "measured")
    assert decide({1: 40.0, 2: 30.0}, 0.05, 2) == (1, "measured")  # tiny: one thread wins
    assert suspect({1: 10.0, 2: 0.8}, 0.1) == "several threads collapsed"
    fast = 2 / MANY_THREADS_FROM  # updates/s of a model whose update is below the line
    best, how = decide({1: fast, 2: 1.0}, 0.9, 2)
    assert best == 1 and how.startswith("by update time (other processes used 0.9 cores")
    best, how = decide({1: 5.0, 2: 0.3}, 0.95, 2)  # 200 ms per update: every core
    assert best == 2 and "discarded" in how


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0) | {0, 1}) < 2 or os.cpu_count() < 2,
                    reason="needs two cores")
def test_a_busy_loop_on_one_core_is_seen_and_the_probe_stays_short():
    cores = {0, 1}  # thread_probe.py's child widens itself to these too
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    try:
        time.sleep(0.5)
        out = subprocess.run([sys.executable, str(ROOT / "recipes/bench/thread_probe.py"),
                              "--probe-only", "demo"], capture_output=True, text=True,
                             timeout=300, preexec_fn=lambda: os.sched_setaffinity(0, cores))
    finally:
        busy.kill()
        busy.wait()
    assert out.returncode == 0, out.stderr[-2000:]
    chosen = json.loads(out.stdout.strip().splitlines()[-1])
    assert chosen["probe_other_cores"] >= 0.3, chosen
    assert chosen["thread_policy"].startswith("by update time"), chosen
    per_update = 1 / chosen["updates_per_s_by_threads"]["1"]
    assert chosen["threads"] == (2 if per_update >= MANY_THREADS_FROM else 1)
    assert chosen["seconds"] <= 5 + 2 * per_update + 1, chosen  # the blocks, the warm-ups
