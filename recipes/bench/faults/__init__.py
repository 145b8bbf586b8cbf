"""The fault matrix's trials (recipes/bench/fault_matrix.py): damaged stores, signals to
every long-running command, bad input. Each trial runs real `wmtool` processes on real
files and returns an Outcome."""
