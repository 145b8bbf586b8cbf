#!/usr/bin/env bash
# Behaviour learned only in imagination beats the random policy (issue "See and ship").
# 1. collect random-policy episodes of DMC cartpole-balance (state) into HDF5;
# 2. train a world model offline on them (no env steps);
# 3. `wmtool imagine --from-scratch`: a fresh actor-critic trained only inside that frozen
#    model, from the dataset's real states; greedy evaluation (10 episodes) in the real env.
# Prints the random policy's return (from the dataset) next to the imagined behaviour's, and
# writes the behaviour run's record (recipes/bench/record.py) to benchmarks/results/.
# Usage: recipes/bench/imagine_offline.sh [EPISODES] [WM_UPDATES] [BEHAVIOUR_UPDATES]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/bench/guarded.sh  # $py, wm, $describe: refuses uncommitted code or recipes
episodes=${1:-20}; wm_updates=${2:-1500}; behaviour_updates=${3:-1500}
out=${OUT:-runs/bench/imagine-$(date +%s)}
mkdir -p "$out"
W=wm
echo "machine: $(nproc) cores, $(date -u +%F); $episodes random episodes, $wm_updates world-model updates, $behaviour_updates behaviour updates"
$W collect --env dmc:cartpole-balance --episodes "$episodes" --seed 100 --out "$out/random.h5" --quiet
$W data info "$out/random.h5" --json > "$out/random.json"
$W train --algo dreamerv3 --recipe dreamerv3__dmc_proprio_cpu --data "$out/random.h5" \
  --steps "$wm_updates" --run-dir "$out/wm" --set train.eval_every=0 --quiet --json > "$out/wm.json"
$W imagine --run "$out/wm" --from-scratch --steps "$behaviour_updates" --env dmc:cartpole-balance \
  --eval-episodes 10 --run-dir "$out/behaviour" --quiet --json > "$out/behaviour.json"
"$py" recipes/bench/record.py --describe "$describe" "$out/behaviour" --command "$0 $episodes $wm_updates $behaviour_updates" \
  --variant "imagination only: $episodes random episodes, $wm_updates + $behaviour_updates updates" \
  --measure random_policy="$out/random.json:return" >&2
"$py" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
random = json.loads((out / "random.json").read_text())
wm, beh = (json.loads((out / f"{n}.json").read_text()) for n in ("wm", "behaviour"))
r = random["return"]
print(f"random policy ({random['episodes']} episodes): {r['mean']:.1f} ± {r['std']:.1f}")
print(f"world model: {wm['updates']} updates offline in {wm['seconds'] / 60:.1f} min")
e = beh["eval"]
print(f"imagined behaviour: {beh['updates']} updates in {beh['seconds'] / 60:.1f} min, "
      f"{beh['imagined_steps_per_s']:,} imagined steps/s, {beh['env_steps_training']} env steps "
      f"for training; greedy eval ({e['episodes']} episodes): {e['return_mean']:.1f} ± "
      f"{e['return_std']:.1f} (min {e['return_min']:.1f})")
PY
