#!/usr/bin/env bash
# Learning benchmark: DMC from state on this CPU with the shipped recipe
# recipes/exp/$ALGO__dmc_proprio_cpu.yaml (ALGO: dreamerv3 by default, planet, dreamerv1,
# dreamerv2, tdmpc2; SIZE: a size preset, e.g. SIZE=1m for tdmpc2). Prints, per seed,
# wall-clock minutes, agent and env steps, updates and the final greedy evaluation, then
# every evaluation on the way with its minute (`wmtool compare` draws the curves) and the
# best one's checkpoint; for planners also the planning time per action.
# Usage: [ALGO=planet] recipes/bench/dreamer_learning.sh [TASK] [SEEDS...]   e.g. cartpole-balance 0 1 2
# JOBS=2 runs two seeds at a time with one torch thread each (the 2-core machine stays
# full); the default runs them one after the other with the recipe's threads.
# PLAN_EVAL=N then scores the final weights greedily (planning, for TD-MPC2, whose recipe
# evaluates with the policy prior while training) over N episodes with `wmtool eval`.
# SETS="--set env.action_repeat=2" passes extra overrides to every run (they win over the
# recipe, its per-task section included). Each run's record (command, commit, machine,
# config, every seeded evaluation) goes to benchmarks/results/ (recipes/bench/record.py);
# `make tables` turns the records into docs/benchmarks.md.
# Guarded like heldout_suite.sh: refuses a tree with uncommitted changes to code or recipes
# (recipes/bench/guard.py), and every run it starts leaves a record, finished or not.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/bench/guarded.sh  # $py, wm, $describe
task=${1:-cartpole-balance}; shift || true
seeds=${*:-0 1 2}
out=${OUT:-runs/bench}
jobs=${JOBS:-1}
algo=${ALGO:-dreamerv3}
size=${SIZE:+--size $SIZE}
threads=${THREADS:-$([ "$jobs" -gt 1 ] && echo 1 || echo 0)}  # THREADS=1 when another run shares the machine
commit=$(git rev-parse HEAD)  # the recipe's commit, whatever lands while the runs go on
command_line="ALGO=$algo SIZE=${SIZE:-} JOBS=$jobs THREADS=$threads PLAN_EVAL=${PLAN_EVAL:-} SETS='${SETS:-}' $0 $task $seeds"
echo "machine: $(nproc) cores, $(date -u +%F), recipe ${algo}__dmc_proprio_cpu, task $task, $jobs at a time"
run_seed() {
  local seed=$1 dir="$out/$algo-$task-$1-$(date +%s)"
  local json
  json=$(wm train --algo "$algo" --recipe "${algo}__dmc_proprio_cpu" $size \
         --env "dmc:$task" --seed "$seed" --run-dir "$dir" --set runtime.threads="$threads" \
         ${SETS:-} --json --quiet) || json=''  # a failed run is recorded too
  local planned='{}' record_args=()
  if [ -n "${PLAN_EVAL:-}" ] && [ -n "$json" ]; then
    planned=$(wm eval --run "$dir" --episodes "$PLAN_EVAL" --mode greedy \
              --json --quiet)
    echo "$planned" > "$dir/final_weights_eval.json"
    record_args=(--plan-eval "$dir/final_weights_eval.json")
  fi
  "$py" recipes/bench/record.py "$dir" "${record_args[@]}" \
    --command "$command_line" --commit "$commit" --describe "$describe" --concurrent "$jobs run(s) at a time, $threads thread(s) each" \
    >&2 || echo "$seed: no record: $dir never started (no run.json)" >&2
  [ -n "$json" ] || { echo "$seed: the run failed (see $dir); its record says so" >&2; return; }
  "$py" - "$json" "$seed" "$planned" <<'PY'
import json, sys
r, seed, planned = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
e = r["eval"]
plan = f"  planning {e['plan/ms_per_action']:.0f} ms/action" if "plan/ms_per_action" in e else ""
print(f"{seed:<6} {r['seconds'] / 60:>10.1f} {r['agent_steps']:>11} {r['env_steps']:>10} {r['updates']:>9} "
      f"{e['return_mean']:>8.1f} ± {e['return_std']:.1f}  {r['run_dir']}{plan}")
rows = [json.loads(line) for line in open(f"{r['run_dir']}/metrics.jsonl")]
start = rows[-1]["time"] - r["seconds"]  # the last row is logged as the run ends
curve = [f"{row['step']}:{row['eval/return_mean']:.0f}@{(row['time'] - start) / 60:.0f}min"
         for row in rows if "eval/return_mean" in row]
print(f"       evals (agent steps:return@minute) {' '.join(curve)}")
best = r.get("best_eval")
if best:
    print(f"       best evaluation {best['return_mean']:.1f} at {best['step']} agent steps: "
          f"{best['checkpoint']}")
if planned:
    print(f"       final weights, greedy (planning) over {planned['episodes']} episodes: "
          f"{planned['return_mean']:.1f} ± {planned['return_std']:.1f}")
PY
}
printf '%-6s %10s %11s %10s %9s %14s\n' seed minutes agent_steps env_steps updates eval_return
running=0
for seed in $seeds; do
  run_seed "$seed" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
