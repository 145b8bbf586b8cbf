"""README's tour runs as written (issue 43): every line of its ```bash block, in an empty
directory with `.venv/bin` on PATH, through recipes/bench/tour.py with its --small budgets
(the same script times the tour at README's own budgets for the record)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERBS = ("collect", "data info", "train", "eval", "dream", "imagine", "export", "--resume",
         "compare", "bench", "--nproc", "sweep")


@pytest.mark.slow
def test_every_line_of_the_readme_tour_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "recipes/bench/tour.py"), "--small",
                           "--workdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    result = json.loads(proc.stdout)
    failed = [(r["line"], r["stderr_tail"]) for r in result["lines"] if r["exit"]]
    assert proc.returncode == 0 and result["passed"], failed
    lines = [r["line"] for r in result["lines"]]
    assert all(any(verb in line for line in lines) for verb in VERBS), lines
    # results on stdout, for every wmtool line that computes something
    assert all(r["stdout_tail"].strip() for r in result["lines"]), \
        [r["line"] for r in result["lines"] if not r["stdout_tail"].strip()]
    for name in ("eval.mp4", "dream.png", "policy.onnx", "curves.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert result["learning"]["random_return"] > 0
    assert "final_eval_return" in result["learning"]
