#!/usr/bin/env bash
# DreamerV3 learning benchmark: DMC from state on this CPU, one run per seed, one after the
# other (never in parallel: two cores). Prints wall-clock, env steps, updates and the final
# greedy evaluation (10 episodes) per seed, then the mean.
# Usage: recipes/bench/dreamer_learning.sh [TASK] [SEEDS...]   e.g. cartpole-balance 0 1 2
set -euo pipefail
cd "$(dirname "$0")/../.."
task=${1:-cartpole-balance}; shift || true
seeds=${*:-0 1 2}
out=${OUT:-runs/bench}
echo "machine: $(nproc) cores, $(date -u +%F), recipe dreamerv3__dmc_proprio_cpu, task $task"
printf '%-6s %10s %10s %9s %14s\n' seed minutes env_steps updates eval_return
for seed in $seeds; do
  dir="$out/dreamerv3-$task-$seed-$(date +%s)"
  json=$(.venv/bin/wmtool train --algo dreamerv3 --recipe dreamerv3__dmc_proprio_cpu \
         --env "dmc:$task" --seed "$seed" --run-dir "$dir" --json --quiet)
  .venv/bin/python - "$json" "$seed" <<'PY'
import json, sys
r, seed = json.loads(sys.argv[1]), sys.argv[2]
e = r["eval"]
print(f"{seed:<6} {r['seconds'] / 60:>10.1f} {r['env_steps']:>10} {r['updates']:>9} "
      f"{e['return_mean']:>8.1f} ± {e['return_std']:.1f}")
PY
done
