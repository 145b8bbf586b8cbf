# `make demo` and `make test` are the two set-up commands in README.md.
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: setup demo test bench tables
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

demo: setup
	$(BIN)/wmtool train --algo dreamerv3 --recipe dreamerv3__gym_cartpole_demo --size debug --run-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/python -m pytest -q -n auto --durations=10

bench: setup
	bash recipes/bench/collect_throughput.sh

tables: setup
	$(BIN)/python recipes/bench/tables.py
