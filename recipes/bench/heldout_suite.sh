#!/usr/bin/env bash
# The held-out suite (docs/heldout-suite.md) for one algorithm's frozen recipe
# recipes/exp/$ALGO__dmc_proprio_cpu.yaml (RECIPE= names another, e.g. the pixel recipe
# dreamerv3__dmc_vision_cpu): TASKS x SEEDS as one resumable `wmtool sweep`,
# JOBS runs at a time with one torch thread each. Then a record for every run it started,
# finished or not (recipes/bench/sweep_records.py), and the tables (recipes/bench/tables.py).
#
# Guarded: it refuses to start or resume from a tree with uncommitted changes to wmtool/,
# recipes/ or pyproject.toml (recipes/bench/guard.py), and a sweep resumes only on the code it
# started on (the commit in $OUT/commit): every record names one commit that trained it from
# start to end, and carries `git describe --dirty` of the tree at its start and at its record.
# Run the benchmarks from a clean checkout of their own (git worktree add ../bench HEAD) so
# that work in your main checkout cannot leak into runs that are under way.
#
# A recipe in bf16 (train.amp, e.g. the pixel recipe) starts nothing on a machine without native
# bf16: it stops with a one-line error, and no run or record is made.
#
# Run it again after a stop or a kill: finished runs are skipped, interrupted ones resume from
# their last checkpoint, and their records' wall minutes leave the pause out. STOP_AT=HH:MM
# stops the sweep then (each run checkpoints), so that the records are written before the
# machine goes away; an interrupted run's record says so.
#
# Usage: [ALGO=tdmpc2] [RECIPE=name] [SIZE=1m] [TASKS="walker-walk finger-spin"] [SEEDS=100,101,102]
#        [JOBS=3] [STOP_AT=18:40] [OUT=runs/heldout/$ALGO]
#        [RECORDS=benchmarks/results] [PYTHON=.venv/bin/python] [STEPS=N] [SETS="--set k=v"]
#        [BESIDE="what else runs on the machine"] recipes/bench/heldout_suite.sh
# STEPS and SETS shrink the runs for a smoke test (their records carry the budget they ran).
# e.g.   ALGO=tdmpc2 SIZE=1m MUJOCO_GL=egl recipes/bench/heldout_suite.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
algo=${ALGO:-dreamerv3}
recipe=${RECIPE:-${algo}__dmc_proprio_cpu}
tasks=${TASKS:-"cartpole-swingup walker-walk cheetah-run finger-spin ball_in_cup-catch"}
seeds=${SEEDS:-100,101,102}
jobs=${JOBS:-3}
out=${OUT:-runs/heldout/$algo}
records=${RECORDS:-benchmarks/results}
source recipes/bench/guarded.sh  # $py, wm, $describe
head=$(git rev-parse HEAD)
mkdir -p "$out"
[ -s "$out/commit" ] || echo "$head" > "$out/commit"
commit=$(cat "$out/commit")
if [ "$commit" != "$head" ] && ! git diff --quiet "$commit" HEAD -- wmtool recipes/exp recipes/suite; then
  echo "error: $out was started at ${commit:0:7} and wmtool/ or the recipes changed since;" \
       "finish it from that commit (git worktree add ../suite-${commit:0:7} $commit, then run" \
       "this script there with PYTHON=$PWD/$py OUT=$PWD/$out RECORDS=$PWD/$records)," \
       "or start afresh with another OUT" >&2
  exit 2
fi
# a recipe this machine cannot run (bf16 where bf16 would be emulated) starts no run at all
"$py" - "$algo" "$recipe" <<'PY' || exit 2
import sys
from wmtool import config, runtime
from wmtool.errors import WmtoolError
cfg = config.compose(recipe=sys.argv[2], algo=sys.argv[1])
try:
    if cfg.train.amp:
        runtime.check_bf16("cpu")
except WmtoolError as exc:
    sys.exit(f"error: recipe {sys.argv[2]} cannot run on this machine: {exc}")
PY
ids=$(for t in $tasks; do printf 'dmc:%s,' "$t"; done); ids=${ids%,}
first=${ids%%,*}
command_line="ALGO=$algo RECIPE=$recipe SIZE=${SIZE:-} TASKS='$tasks' SEEDS=$seeds JOBS=$jobs STEPS=${STEPS:-} SETS='${SETS:-}' $0"
echo "machine: $(nproc) cores, $(date -u +%F); $algo on $(echo $tasks | wc -w) tasks x seeds" \
     "$seeds, $jobs at a time, commit ${commit:0:7} ($describe) -> $out"
limit=()
if [ -n "${STOP_AT:-}" ]; then
  stop=$(date -d "$STOP_AT" +%s) || { echo "error: STOP_AT=$STOP_AT is not a time; give HH:MM" >&2; exit 2; }
  # HH:MM already past today means that time tomorrow (a sweep started late in the evening)
  [ "$stop" -gt "$(date +%s)" ] || stop=$(date -d "$STOP_AT tomorrow" +%s)
  seconds=$(( stop - $(date +%s) ))
  [ "$seconds" -gt 60 ] || { echo "error: STOP_AT=$STOP_AT is less than a minute away" >&2; exit 2; }
  limit=(timeout --signal=TERM --kill-after=300 "$seconds")
fi
"${limit[@]}" "$py" -m wmtool sweep --algo "$algo" --env "$first" \
  --recipe "$recipe" ${SIZE:+--size $SIZE} --seeds "$seeds" \
  --grid "env.id=$ids" --root "$out" --jobs "$jobs" --threads 1 ${STEPS:+--steps $STEPS} \
  ${SETS:-} --quiet \
  || echo "the sweep stopped before every run finished (see $out/sweep.json); run this again"

[ -f "$out/sweep.json" ] || exit 0  # nothing started
"$py" recipes/bench/sweep_records.py "$out" --command "$command_line" --commit "$commit" \
  --describe "$describe" --out "$records" \
  --concurrent "up to $jobs run(s) at a time, 1 thread each${BESIDE:+; beside them: $BESIDE}"
if [ "$records" = benchmarks/results ]; then "$py" recipes/bench/tables.py
else echo "records in $records: make tables there (recipes/bench/tables.py --results DIR)"; fi
