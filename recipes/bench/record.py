"""Write a benchmark run's record (wmtool/benchmarks/record.py says what it holds).

    python recipes/bench/record.py RUN_DIR --command "..." [--plan-eval EVAL.json]
        [--variant NAME] [--measure NAME=RESULT.json[:KEY] ...] [--commit SHA]
        [--concurrent "..."] [--out benchmarks/results]
"""
from wmtool.benchmarks.record import main

if __name__ == "__main__":
    main()
