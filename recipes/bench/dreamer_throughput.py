"""Update throughput of the reference setting, through `wmtool bench` (wmtool/engine/bench.py).

Setting of the reference figure (sheeprl 0.8.4 XS): DreamerV3 on vector CartPole, batch
16 x 64, imagination horizon 15 from all 1024 posterior states, dense 256 / GRU 256 / 32x32
latents (`--size xs`, 3.16M parameters), 2 threads. `--algo/--env/--recipe/--size` measure
any other setting. Prints one JSON object (the keys every record since 0.1 has). Run alone
on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import sys

from wmtool.benchmarks.record import add_record_options, keep
from wmtool.engine.bench import run_bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", default="dreamerv3")
    parser.add_argument("--env", default="gym:CartPole-v1")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--size", default=None, help="size preset (default: xs for dreamerv3 "
                        "without a recipe, else none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--updates", type=int, default=5, help="updates per timed block")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--compile", default="off", help="off | on | auto")
    add_record_options(parser)
    args = parser.parse_args()
    if args.size is None and args.algo == "dreamerv3" and not args.recipe:
        args.size = "xs"  # the reference figure's setting
    result = run_bench(args.algo, args.env, args.recipe, args.size, compile=args.compile,
                       threads=args.threads, amp=args.amp, runs=args.runs, updates=args.updates)
    print(json.dumps(result))
    keep("throughput", __file__, sys.argv[1:], result, args, threads=args.threads, peak=False)


if __name__ == "__main__":
    main()
