"""Starting and placing runs, apart from what a run does (wmtool/engine/):

- `sweep`: a grid of `wmtool train` processes, K at a time with threads pinned;
- `sweep_ray`: the same runs as tasks on a Ray cluster;
- `torchrun`: `wmtool train --nproc N`, torchrun's launcher in process;
- `threads`: the thread-count probe a training run may use before its first update.

Nothing here imports the engine, and the engine imports nothing here: the CLI hands the
thread probe to the trainer it builds (tests/test_style.py keeps both arrows one way).
"""
