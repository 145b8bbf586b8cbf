"""Refuse to start or resume a benchmark run from a tree whose code or recipes differ from a
commit: a record must name the code that made it.

    python recipes/bench/guard.py      # prints `git describe --always --dirty`; exit 2 if not clean

Checks, for the checkout this script is in: no uncommitted change (tracked or untracked) under
wmtool/, recipes/ or pyproject.toml, and that `import wmtool` in this interpreter loads this
checkout's package (not another checkout's or an installed copy). Benchmark scripts call it
before they start or resume runs and pass what it prints to recipes/bench/record.py.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GUARDED = ("wmtool", "recipes", "pyproject.toml")
TREE = Path(__file__).resolve().parents[2]


def changes(tree: Path) -> list[str]:
    """`git status --porcelain` lines for the guarded paths of `tree` (untracked files too:
    an untracked module is imported all the same)."""
    done = subprocess.run(["git", "-C", str(tree), "status", "--porcelain",
                           "--untracked-files=all", "--", *GUARDED],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: {tree} is not a git checkout ({done.stderr.strip()}); "
                         "run benchmarks from a clone of the repository")
    return [line for line in done.stdout.splitlines() if line.strip()]


def check(tree: Path = TREE, package: Path | None = None) -> str:
    """What `git describe --always --dirty` says of `tree`, after refusing a dirty tree or a
    wmtool imported from elsewhere (SystemExit with one line naming the fix)."""
    dirty = changes(tree)
    if dirty:
        files = ", ".join(line[3:] for line in dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise SystemExit(f"error: uncommitted changes in {tree} ({files}); a benchmark run must "
                         "come from a commit: commit them, or run from a clean checkout "
                         f"(git worktree add ../bench-HEAD HEAD)")
    if package is not None and tree.resolve() not in package.resolve().parents:
        raise SystemExit(f"error: this Python imports wmtool from {package}, not from {tree}; "
                         f"run with PYTHONPATH={tree}")
    return subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty",
                           "--abbrev=12"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    import wmtool  # as the runs will import it (the scripts set PYTHONPATH=<checkout>)

    try:
        print(check(TREE, Path(wmtool.__file__).parent))
    except SystemExit as stop:
        print(stop.code, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
