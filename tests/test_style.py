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
    # the modules at the top (config, rundir, ckpt, spaces, ...) serve every layer, so they
    # import none of the upper ones; __main__ is the entry that starts the CLI
    top = ("wmtool.engine", "wmtool.cli", "wmtool.play")
    found += [f"{path.relative_to(PACKAGE)} imports {name}"
              for path in sorted(PACKAGE.glob("*.py")) if path.name != "__main__.py"
              for name in sorted(imported_modules(path)) if name.startswith(top)]
    assert not found, "\n".join(found)


def test_engine_and_cli_never_read_an_algorithms_own_settings():
    """An algorithm's config sections are its own files' business: the engine asks through
    the contract (e.g. Behavior.real_scoring for World Models' controller.score_in)."""
    own = {"rssm", "actor", "critic", "planner", "mppi", "tdmpc2", "genie", "vae", "mdnrnn",
           "controller"}
    found = [f"{path.relative_to(PACKAGE)}:{node.lineno} reads cfg.{node.attr}"
             for layer in ("engine", "cli") for path in sorted((PACKAGE / layer).glob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Attribute) and node.attr in own
             and isinstance(node.value, (ast.Name, ast.Attribute))
             and (getattr(node.value, "id", None) == "cfg"
                  or getattr(node.value, "attr", None) == "cfg")]
    assert not found, "\n".join(found)


def test_launching_and_the_engine_stay_apart():
    """wmtool.launch (sweeps, the --nproc launcher, the thread probe) imports nothing of the
    engine, and neither the engine nor anything below it imports wmtool.launch."""
    found = [f"{path.relative_to(PACKAGE)} imports {name}"
             for path in sorted((PACKAGE / "launch").glob("*.py"))
             for name in sorted(imported_modules(path)) if name.startswith("wmtool.engine")]
    found += [f"{path.relative_to(PACKAGE)} imports {name}"
              for path in sorted(PACKAGE.rglob("*.py"))
              if path.relative_to(PACKAGE).parts[0] not in ("cli", "launch", "benchmarks")
              for name in sorted(imported_modules(path)) if name.startswith("wmtool.launch")]
    assert not found, "\n".join(found)


def test_benchmarks_sit_on_top_and_measuring_scripts_need_no_path_tricks():
    """wmtool.benchmarks (records, tables) may use the engine; nothing else in wmtool imports
    it. The scripts in recipes/bench import it as a package: none edits sys.path."""
    found = [f"{path.relative_to(PACKAGE)} imports {name}" for path in sorted(PACKAGE.rglob("*.py"))
             if "benchmarks" not in path.relative_to(PACKAGE).parts
             for name in sorted(imported_modules(path)) if name.startswith("wmtool.benchmarks")]
    bench = PACKAGE.parent / "recipes" / "bench"
    found += [f"{path.relative_to(bench)} edits sys.path" for path in sorted(bench.iterdir())
              if path.suffix in (".py", ".sh") and "sys.path.insert" in path.read_text()]
    assert not found, "\n".join(found)


def module_graph() -> dict[str, set[str]]:
    """wmtool's modules and the wmtool modules each imports, anywhere in the file (an import
    inside a function is an arrow too: deferring it only hides a cycle)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
               .removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        named = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        graph[name] = {m for m in named if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    order, low, stack, found, counter = {}, {}, [], [], [0]

    def visit(v: str) -> None:
        order[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))
    for v in sorted(graph):
        if v not in order:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    found = cycles(module_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_an_unfilled_contract_method_says_what_it_must_do():
    import pytest

    from wmtool.behavior.base import Behavior
    from wmtool.models.base import PlansWithValues, WorldModel

    with pytest.raises(NotImplementedError, match=r"schedule\(\) -> \[Phase\(name, updates"):
        WorldModel().schedule()
    with pytest.raises(NotImplementedError, match=r"act\(feat, mode\).*wmtool.behavior.base"):
        Behavior().act(None)
    with pytest.raises(NotImplementedError, match=r"rollout_return\(z, actions"):
        PlansWithValues().rollout_return(None, None)
    bare = [f"{path.relative_to(PACKAGE)}:{n}" for path in sorted(PACKAGE.rglob("base.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip() == "raise NotImplementedError"]
    assert not bare, bare
