# `make demo` and `make test` are the two set-up commands in README.md.
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: setup demo test test-fast lint mutate docs bench tables
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

demo: setup
	$(BIN)/wmtool train --algo dreamerv3 --recipe dreamerv3__gym_cartpole_demo --size debug --run-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/python -m pytest -q -n auto --durations=10

test-fast: setup  # the tests not marked slow (no end-to-end runs)
	$(BIN)/python -m pytest -q -n auto -m "not slow"

lint: setup
	$(BIN)/ruff check wmtool tests recipes/bench examples

mutate: setup  # mutation testing of the loss and target functions with the fast tests (docs/mutation.md)
	$(BIN)/python scripts/mutate.py

docs: setup  # strict: a broken link or a page missing from nav fails the build
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: setup
	bash recipes/bench/collect_throughput.sh

tables: setup
	$(BIN)/python recipes/bench/tables.py
