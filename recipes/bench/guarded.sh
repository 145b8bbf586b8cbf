# Sourced by the learning benchmark scripts (from the checkout's root): runs use this
# checkout's wmtool (PYTHONPATH), through `$py -m wmtool` (`wm`), and only from a tree with no
# uncommitted changes to code or recipes (recipes/bench/guard.py, which exits 2 with the fix
# otherwise). $describe is `git describe --always --dirty` for the records (record.py
# --describe). PYTHON= picks the interpreter (default .venv/bin/python).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
py=${PYTHON:-.venv/bin/python}
describe=$("$py" recipes/bench/guard.py) || exit 2
wm() { "$py" -m wmtool "$@"; }
