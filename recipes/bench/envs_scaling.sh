#!/usr/bin/env bash
# Env steps/s of the vector env engine (what `train.envs` / `--workers` use) with 1, 2 and 4
# env processes: `wmtool collect` with a random policy on dmc:cartpole-swingup from 64x64
# pixels, STEPS steps, two alternating rounds; one record, benchmarks/results/wall-envs-*.json.
# Run alone:  bash recipes/bench/envs_scaling.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
STEPS=${1:-3000}
WMTOOL=${WMTOOL:-.venv/bin/wmtool}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for round in 1 2; do
  for k in 1 2 4; do
    "$WMTOOL" collect --env dmc:cartpole-swingup --obs pixels --steps "$STEPS" --workers "$k" \
      --out "$OUT/c-$k-$round.h5" --json --quiet > "$OUT/c-$k-$round.json"
  done
done
"${PYTHON:-.venv/bin/python}" - "$OUT" "$STEPS" "bash recipes/bench/envs_scaling.sh $STEPS" <<'PY'
import datetime, json, pathlib, statistics, sys
out, steps, command = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
from wmtool.benchmarks.record import head_commit, machine
commit = head_commit()
rows = []
for k in (1, 2, 4):
    runs = [json.loads((out / f"c-{k}-{r}.json").read_text()) for r in (1, 2)]
    rates = [r["env_steps_per_s"] for r in runs]
    rows.append({"what": f"collect {steps} steps, dmc:cartpole-swingup 64x64 pixels, random "
                         f"policy, {k} env process(es)",
                 "seconds": statistics.median(r["seconds"] for r in runs),
                 "steps_per_s": statistics.median(rates), "rounds": runs})
record = {"kind": "wall", "name": "env processes", "command": command, "commit": commit,
          "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "machine": machine(None, "nothing"),
          "rows": rows}
path = pathlib.Path("benchmarks/results") / f"wall-envs-{datetime.date.today()}-{commit[:7]}.json"
path.write_text(json.dumps(record, indent=1) + "\n")
print(path, [r["steps_per_s"] for r in rows])
PY
