# `make demo` and `make test` are the two set-up commands in README.md.
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: setup demo test bench
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

demo: setup
	$(BIN)/wmtool collect --env dmc:cartpole-swingup --obs pixels --episodes 4 --out data/demo.h5
	$(BIN)/wmtool data info data/demo.h5

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	bash recipes/bench/collect_throughput.sh
