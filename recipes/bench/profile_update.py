"""Where an update's time goes: torch.profiler over a few updates of one algorithm's phase,
the operators ranked by their own CPU time (children excluded), and acting apart.

    python recipes/bench/profile_update.py --algo dreamerv3 \
        --recipe dreamerv3__dmc_proprio_cpu --env dmc:cartpole-swingup --set env.obs=pixels \
        [--threads 1] [--updates 3] [--top 25] [--out profile.json] [--trace trace.json]

Profiled time is longer than real time (the profiler records every operator); read the
shares, and time with `wmtool bench` or recipes/bench/speed.py. Run it alone.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from wmtool.benchmarks.record import add_record_options, keep
from wmtool.engine.bench import Prepared


def ranked(prof, top: int) -> list[dict]:
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000, 2),
             "share": round(e.self_cpu_time_total / total, 4), "calls": e.count} for e in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", required=True)
    ap.add_argument("--env", default="gym:CartPole-v1")
    ap.add_argument("--recipe")
    ap.add_argument("--size")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--updates", type=int, default=3)
    ap.add_argument("--acting", type=int, default=20, help="acting steps profiled apart")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="write the ranking as JSON")
    ap.add_argument("--trace", help="write a Chrome trace of the updates")
    add_record_options(ap)
    args = ap.parse_args()
    prepared = Prepared(args.algo, args.env, args.recipe, args.size,
                        ["train.compile=off", f"runtime.threads={args.threads}", *args.sets],
                        None, 3000)
    for _ in range(2):  # warm-up: allocator, first-call work
        prepared.update()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as updates:
        for _ in range(args.updates):
            prepared.update()
    if args.trace:
        updates.export_chrome_trace(args.trace)
    row = prepared.replay.sample(1, 1)
    obs = {k: v[:, 0] for k, v in row.items()}
    carry = None
    with profile(activities=[ProfilerActivity.CPU]) as acting:
        for _ in range(args.acting):
            _, carry = prepared.agent.policy_step(obs, carry, "sample")
    result = {"algo": args.algo, "env": args.env, "recipe": args.recipe, "size": args.size,
              "sets": args.sets, "threads": prepared.threads, "updates": args.updates,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "update_ops": ranked(updates, args.top), "acting_ops": ranked(acting, 10)}
    for name in ("update_ops", "acting_ops"):
        print(f"{name}: op, own ms, share, calls", file=sys.stderr)
        for r in result[name]:
            print(f"  {r['op'][:48]:48s} {r['self_ms']:10.1f} {100 * r['share']:6.1f}% "
                  f"{r['calls']:6d}", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    keep("profile", __file__, sys.argv[1:], result, args, threads=prepared.threads, peak=False)


if __name__ == "__main__":
    main()
