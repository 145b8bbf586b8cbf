#!/usr/bin/env bash
# Genie-style latent actions on an Atari game from random-policy frames, graded on the true
# actions it never trained on. Stages (each skipped when its output exists, so a stopped run
# picks up where it was): collect EPISODES random episodes and 4 held-out ones (another
# seed), drop the training set's actions, train --algo genie per seed, then
# `wmtool eval --data` on the held-out episodes. Prints per seed: minutes, tokenizer PSNR,
# ΔPSNR at t=4 (inferred vs random latent actions) and latent-vs-true-action NMI and
# best-mapping accuracy beside their chance levels, against a_t and against a_{t-1} (ALE
# Pong shows the paddle's response one frame late). Each seed's record, with the held-out
# evaluation attached, goes to benchmarks/results/ (recipes/bench/record.py).
# Usage: [OUT=runs/genie] [SIZE=preset] [THREADS=n] recipes/bench/genie_atari.sh [GAME] [EPISODES] [SEEDS...]
# THREADS=1 when another run shares the 2-core machine (default: one per core).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/bench/guarded.sh  # $py, wm, $describe: refuses uncommitted code or recipes
game=${1:-pong}; episodes=${2:-20}; shift 2 || true
seeds=${*:-0 1 2}
out=${OUT:-runs/genie}
size=${SIZE:+--size $SIZE}
threads=${THREADS:-0}
wm=wm
mkdir -p "$out"
echo "machine: $(nproc) cores, $(date -u +%F); atari:$game, $episodes random episodes"
[ -f "$out/$game.h5" ] || $wm collect --env "atari:$game" --episodes "$episodes" --seed 100 \
  --workers 2 --out "$out/$game.h5" --quiet
[ -f "$out/$game-heldout.h5" ] || $wm collect --env "atari:$game" --episodes 4 --seed 900 \
  --out "$out/$game-heldout.h5" --quiet
[ -f "$out/$game-frames.h5" ] || $wm data drop-actions "$out/$game.h5" --out "$out/$game-frames.h5"
printf '%-5s %8s %10s %10s %14s %22s %14s %22s\n' seed minutes tok_psnr dpsnr_t4 "nmi (chance)" \
  "accuracy (chance/maj)" "nmi a_t-1" "accuracy a_t-1"
for seed in $seeds; do
  run="$out/genie-$game-$seed"
  if [ ! -f "$run/train.json" ]; then
    $wm train --algo genie --data "$out/$game-frames.h5" $size --seed "$seed" --run-dir "$run" \
      --set runtime.threads="$threads" --quiet --json > "$run.train.json.tmp"
    mv "$run.train.json.tmp" "$run/train.json"
  fi
  $wm eval --run "$run" --data "$out/$game-heldout.h5" --batches 8 --json > "$run/eval.json"
  "$py" recipes/bench/record.py "$run" --describe "$describe" --measure heldout="$run/eval.json" \
    --command "SIZE=${SIZE:-} THREADS=$threads $0 $game $episodes $seeds" \
    --variant "$episodes random episodes, graded on 4 held-out" >&2
  "$py" - "$run" "$seed" <<'PY'
import json, sys
run, seed = sys.argv[1], sys.argv[2]
t, e = json.load(open(f"{run}/train.json")), json.load(open(f"{run}/eval.json"))
def agreement(a):
    return (f"{a['nmi']:>6.3f} ({a['chance']['nmi']:.3f}) {a['accuracy']:>9.3f} "
            f"({a['chance']['accuracy']:.3f}/{a['chance']['majority']:.3f})")
a = e["actions"]
print(f"{seed:<5} {t['seconds'] / 60:>8.1f} {e['tokenizer_psnr']:>10.2f} {e['delta_psnr_t4']:>10.2f} "
      f"{agreement(a)} {agreement(a['previous'])}")
PY
done
