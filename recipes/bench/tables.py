"""`make tables`: docs/benchmarks.md and docs/benchmarks-all.md from benchmarks/results/
(wmtool/benchmarks/tables.py)."""
from wmtool.benchmarks.tables import main

if __name__ == "__main__":
    main()
