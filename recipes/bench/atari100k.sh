#!/usr/bin/env bash
# Atari 100k with the recipe dreamerv3__atari100k (the anchors' protocol: 400k frames, frame
# skip 4 with max-pool, no sticky actions, 30 no-op starts, 64x64, minimal action set,
# 108k-frame cap): every game x seed as one run of a `wmtool sweep` (resumable: run it again
# after a stop), then each finished run's final weights scored greedily over EVAL_EPISODES
# episodes (`wmtool eval`), its record written (recipes/bench/record.py), and the
# human-normalised mean, median and IQM with bootstrap 95% CIs printed
# (recipes/bench/atari100k_aggregate.py).
# Usage: [GAMES="pong boxing"] [SEEDS=0,1,2,3,4] [SIZE=s] [PARALLEL=1] [GPUS=0,1]
#        [DEVICE=cuda] [STEPS=N] [SETS="--set k=v"] [EVAL_EPISODES=100] [OUT=runs/atari100k]
#        [RECORDS=benchmarks/results] recipes/bench/atari100k.sh
# The default is the paper's setting on a GPU; STEPS and SETS shrink it for a smoke run
# (records then carry the budget they ran and are not comparable with published figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/bench/guarded.sh  # $py, wm, $describe: refuses uncommitted code or recipes
games=${GAMES:-"alien amidar assault asterix bank_heist battle_zone boxing breakout \
chopper_command crazy_climber demon_attack freeway frostbite gopher hero jamesbond kangaroo \
krull kung_fu_master ms_pacman pong private_eye qbert road_runner seaquest up_n_down"}
seeds=${SEEDS:-0,1,2,3,4}
out=${OUT:-runs/atari100k}
episodes=${EVAL_EPISODES:-100}
device=${DEVICE:-auto}
commit=$(git rev-parse HEAD)
ids=$(for g in $games; do printf 'atari:%s,' "$g"; done); ids=${ids%,}
command_line="GAMES='$games' SEEDS=$seeds SIZE=${SIZE:-s} PARALLEL=${PARALLEL:-1} STEPS=${STEPS:-} SETS='${SETS:-}' EVAL_EPISODES=$episodes $0"
echo "machine: $(nproc) cores, $(date -u +%F); $(echo $games | wc -w) games x seeds $seeds -> $out"
wm sweep --algo dreamerv3 --env atari:pong --recipe dreamerv3__atari100k \
  --size "${SIZE:-s}" --seeds "$seeds" --grid "env.id=$ids" --root "$out" \
  --jobs "${PARALLEL:-1}" ${GPUS:+--gpus $GPUS} ${STEPS:+--steps $STEPS} \
  --set runtime.device="$device" ${SETS:-} --quiet || echo "some runs did not finish (see $out/sweep.json)"
records=()
for run in "$out"/*/; do
  run=${run%/}
  [ -f "$run/run.json" ] || continue
  status=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$run/run.json")
  [ "$status" = finished ] || continue
  if [ ! -f "$run/final_weights_eval.json" ]; then
    wm eval --run "$run" --episodes "$episodes" --mode greedy --json --quiet \
      > "$run/final_weights_eval.json"
  fi
  if [ ! -f "$run/record.path" ]; then
    "$py" recipes/bench/record.py "$run" --describe "$describe" --plan-eval "$run/final_weights_eval.json" \
      --command "$command_line" --commit "$commit" --out "${RECORDS:-benchmarks/results}" \
      --variant "atari100k${STEPS:+ smoke, $STEPS agent steps}" \
      --concurrent "${PARALLEL:-1} run(s) at a time" > "$run/record.path"
  fi
  records+=("$(cat "$run/record.path")")
done
[ "${#records[@]}" -gt 0 ] || { echo "no finished runs yet"; exit 1; }
"$py" recipes/bench/atari100k_aggregate.py "${records[@]}"
