"""The shape of the code (issue 27): the engine and the CLI talk to algorithms only through
the written contract (models/base.py, behavior/base.py) and the registry, and files stay
small enough to read."""
import ast
import re
from pathlib import Path

from wmtool.registry import ALGOS

PACKAGE = Path(__file__).resolve().parent.parent / "wmtool"
ENGINE_AND_CLI = sorted([*(PACKAGE / "engine").glob("*.py"), *(PACKAGE / "cli").glob("*.py")])
PROBE = re.compile(r"\b(hasattr|getattr)\(")


def test_engine_and_cli_never_probe_for_attributes():
    """What a model or behaviour can do is a base-class default or a capability class to
    test with isinstance, never `hasattr`/`getattr`."""
    found = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
             for path in ENGINE_AND_CLI
             for n, line in enumerate(path.read_text().splitlines(), 1) if PROBE.search(line)]
    assert not found, "\n".join(found)


def test_engine_and_cli_never_branch_on_an_algorithm_name():
    """An algorithm name as a whole string literal is a branch waiting to happen; names in
    help texts and hints (longer strings) are fine."""
    found = [f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}"
             for path in ENGINE_AND_CLI
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Constant) and node.value in ALGOS]
    assert not found, "\n".join(found)


def test_no_module_is_over_500_lines():
    long = [f"{path.relative_to(PACKAGE)}: {n} lines" for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > 500]
    assert not long, "\n".join(long)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return ({alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
            | {node.module for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module})


def test_imports_run_downwards_only():
    """cli -> engine -> (registry) -> algos -> models, behavior -> nets, data, envs: nothing
    below the engine imports the engine or the CLI, and models never import algos."""
    upward = {"algos": ("wmtool.engine", "wmtool.cli"),
              "models": ("wmtool.engine", "wmtool.cli", "wmtool.algos"),
              "behavior": ("wmtool.engine", "wmtool.cli", "wmtool.algos"),
              "nets": ("wmtool.engine", "wmtool.cli", "wmtool.algos", "wmtool.models"),
              "data": ("wmtool.engine", "wmtool.cli", "wmtool.algos", "wmtool.models"),
              "envs": ("wmtool.engine", "wmtool.cli", "wmtool.algos", "wmtool.models")}
    found = [f"{path.relative_to(PACKAGE)} imports {name}"
             for layer, banned in upward.items() for path in sorted((PACKAGE / layer).glob("*.py"))
             for name in sorted(imported_modules(path)) if name.startswith(banned)]
    assert not found, "\n".join(found)
