#!/usr/bin/env bash
# Collection throughput vs a bare env loop (issue "Foundation"). Run alone on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "machine: $(nproc) cores, $(python3 -c 'import platform; print(platform.processor() or platform.machine())'), $(date -u +%F)"
.venv/bin/python recipes/bench/collect_throughput.py --runs "${RUNS:-5}"
