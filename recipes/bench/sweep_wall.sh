#!/usr/bin/env bash
# Wall time of a 4-run sweep (2 seeds x 2 actor learning rates, make demo's recipe cut to
# STEPS agent steps): the same runs one after another (2 threads each) vs two at a time
# (1 thread each), on this machine; then one record, benchmarks/results/wall-sweep-*.json.
# Run alone:  bash recipes/bench/sweep_wall.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-2000}
WMTOOL=${WMTOOL:-.venv/bin/wmtool}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
ARGS=(--algo dreamerv3 --env gym:CartPole-v1 --recipe dreamerv3__gym_cartpole_demo --size debug
      --steps "$STEPS" --seeds 0,1 --grid actor.lr=1e-4,3e-4 --json --quiet)
declare -A SECONDS_TAKEN
for mode in "sequence 1 2" "parallel 2 1"; do
  set -- $mode
  start=$(date +%s.%N)
  "$WMTOOL" sweep "${ARGS[@]}" --jobs "$2" --threads "$3" --root "$OUT/$1" > "$OUT/$1.json"
  SECONDS_TAKEN[$1]=$(echo "$(date +%s.%N) - $start" | bc)
done
"${PYTHON:-.venv/bin/python}" - "$OUT" "${SECONDS_TAKEN[sequence]}" "${SECONDS_TAKEN[parallel]}" \
  "$STEPS" "bash recipes/bench/sweep_wall.sh $STEPS" <<'PY'
import datetime, json, pathlib, sys
out, seq, par, steps, command = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
from wmtool.benchmarks.record import head_commit, machine
commit = head_commit()
finals = {m: {g["label"]: g["mean"][-1] for g in json.loads((out / f"{m}.json").read_text())["groups"]}
          for m in ("sequence", "parallel")}
record = {"kind": "wall", "name": "sweep of 4 runs", "command": command, "commit": commit,
          "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "machine": machine(None, "nothing"),
          "rows": [{"what": f"4 runs one after another, 2 threads each ({steps} agent steps)",
                    "seconds": round(seq, 1), "final_eval_by_group": finals["sequence"]},
                   {"what": f"4 runs two at a time, 1 thread each ({steps} agent steps)",
                    "seconds": round(par, 1), "final_eval_by_group": finals["parallel"]}]}
path = pathlib.Path("benchmarks/results") / f"wall-sweep-{datetime.date.today()}-{commit[:7]}.json"
path.write_text(json.dumps(record, indent=1) + "\n")
print(path, seq, par)
PY
