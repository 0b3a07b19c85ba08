"""The engine's modules import in any order, with no cycle, even through imports inside functions."""
import ast
import random
import subprocess
import sys

from engine.settings import REPO_ROOT

ENGINE = REPO_ROOT / "engine"


def module_name(path) -> str:
    """engine/edges/prompt_to_parameter.py -> "edges.prompt_to_parameter"; a package's __init__ is the package."""
    parts = path.relative_to(ENGINE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def engine_imports() -> dict[str, set[str]]:
    """module -> the engine modules it imports anywhere (top level or inside a function), as dotted names
    below `engine` ("edges.prompt_to_parameter", "training")."""
    files = {module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "engine":
                below = node.module.split(".", 1)[1] if "." in node.module else ""
                named = {f"{below}.{a.name}".lstrip(".") for a in node.names}
                deps |= (named & set(files)) or {below}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("engine.")}
        graph[name] = deps & set(files) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per cycle found by depth-first search (empty when the graph is acyclic)."""
    found, state = [], {}

    def visit(v, path):
        state[v] = "open"
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                found.append(path[path.index(w):] + [w])
            elif w not in state:
                visit(w, path + [w])
        state[v] = "done"
    for v in sorted(graph):
        if v not in state:
            visit(v, [v])
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_engine():
    graph = engine_imports()
    assert {"edges.prompt_to_parameter", "tasks.best_of_n", "training"} <= set(graph)   # every package is read
    assert "training" in graph["edges.prompt_to_parameter"]          # `from engine import training` counts
    assert cycles(graph) == []


def test_every_module_imports_alone_in_a_shuffled_order():
    names = sorted(n for n in engine_imports() if n not in ("__main__", "__init__"))   # __main__ runs the CLI
    random.Random(0).shuffle(names)
    code = "import importlib\n" + "".join(f"importlib.import_module('engine.{n}')\n" for n in names)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
