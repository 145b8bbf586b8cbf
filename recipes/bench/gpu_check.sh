#!/usr/bin/env bash
# GPU readiness, for a machine with a CUDA GPU (none was available where this was written):
# `wmtool bench` of DreamerV3 at debug, xs and s, eager and compiled (CUDA graphs), then a
# short training run on the GPU; prints ONE JSON line with every figure. Run from the repo
# root after `make setup` with a CUDA build of torch, alone on the machine:
#   bash recipes/bench/gpu_check.sh > gpu_check.json
# Target (issue 28): size s at batch 16 x 64 under 40 ms per update.
set -euo pipefail
cd "$(dirname "$0")/../.."
WMTOOL=${WMTOOL:-.venv/bin/wmtool}
DEVICE=${DEVICE:-cuda}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for size in debug xs s; do
  for compile in off on; do
    "$WMTOOL" bench --algo dreamerv3 --size "$size" --device "$DEVICE" --compile "$compile" \
      --runs 5 --updates 10 --json --quiet > "$OUT/bench-$size-$compile.json"
  done
done
start=$(date +%s)
"$WMTOOL" train --algo dreamerv3 --env gym:CartPole-v1 --size xs --steps 3000 \
  --set train.prefill=1000 --set runtime.device="$DEVICE" --set train.compile=auto \
  --run-dir "$OUT/run" --json --quiet > "$OUT/train.json"
echo "$(( $(date +%s) - start ))" > "$OUT/train_seconds"

"${PYTHON:-.venv/bin/python}" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
bench = {p.stem.removeprefix("bench-"): json.loads(p.read_text())
         for p in sorted(out.glob("bench-*.json"))}
train = json.loads((out / "train.json").read_text())
runtime = json.loads((out / "run" / "run.json").read_text()).get("runtime", {})
first = next(iter(bench.values()))
print(json.dumps({
    "device": first["device"], "torch": first["torch"], "wmtool": first["wmtool"],
    "matmul_gflops_fp32": first["matmul_gflops_fp32"],
    "matmul_gflops_bf16": first["matmul_gflops_bf16"],
    "ms_per_update": {k: b["ms_per_update"] for k, b in bench.items()},
    "compile_s": {k: b["compile_s"] for k, b in bench.items()},
    "graphs_compiled_while_timed": {k: b["graphs_compiled_while_timed"] for k, b in bench.items()},
    "percent_of_fp32_matmul": {k: b["percent_of_fp32_matmul"] for k, b in bench.items()},
    "s_under_40ms": min(bench["s-off"]["ms_per_update"], bench["s-on"]["ms_per_update"]) < 40,
    "train": {"seconds": int((out / "train_seconds").read_text()), "runtime": runtime,
              "eval_return": (train.get("eval") or {}).get("return_mean")},
}))
PY
