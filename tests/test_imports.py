"""What imports what: production_server has no import cycle, and labkit stays light.

An ONNX worker stays free of TensorFlow because what it imports when it
starts never reaches ``model`` (training's side): only the Keras engine's
loader and the bench's baseline import it, inside functions. The cycle
check counts those imports too, which run as surely as the others, only
later.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "production_server"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path, modules: set[str], at_import: bool = False) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its code (a name from a package is the
    package); ``at_import``: only the imports its module body runs (not in functions or TYPE_CHECKING)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in (tree.body if at_import else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & modules) - {here}


def graph(at_import: bool = False) -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files), at_import) for name, path in files.items()}


def reached(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def a_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(edges[node]):
            if cycle := visit(nxt, path + [node]):
                return cycle
        done.add(node)
        return None

    return next((cycle for node in sorted(edges) if (cycle := visit(node, []))), None)


def test_the_cycle_finder_finds_one():
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set()}) is None


def test_production_server_has_no_import_cycle():
    edges = graph()
    assert "production_server.inference" in edges["production_server.engines"]  # the graph is read
    assert a_cycle(edges) is None, " -> ".join(a_cycle(edges))


def test_starting_a_worker_never_imports_training():
    """What a worker imports as it starts (the tasks, the engines) never reaches ``model``; only the
    Keras engine's loader and the bench's baseline import it, when they run."""
    at_start = graph(at_import=True)
    for module in ("production_server.worker", "production_server.tasks", "production_server.engines",
                   "production_server.inference", "production_server.onnx_export"):
        assert "production_server.model" not in reached(at_start, module), module
    assert "production_server.tasks" in reached(at_start, "production_server.worker")  # the graph is read
    assert "production_server.model" in graph()["production_server.engines"]  # the loader's import is seen


def test_importing_labkit_imports_neither_flask_nor_tensorflow():
    code = ("import sys, labkit, labkit.cicd, labkit.grading; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'tensorflow', 'keras', 'celery'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# What labkit may import of the server: the contract, and the data set's and the archives' files, which
# the docker and machine backends stage (both helpers read files; neither starts any of the server).
SERVER_MODULES_LABKIT_USES = {"production_server.contract", "production_server.data", "production_server.archives"}


def server_imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("production_server"):
            found |= ({f"{node.module}.{a.name}" for a in node.names} if node.module == "production_server"
                      else {node.module})
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("production_server")}
    return found


def test_labkit_imports_of_the_server_are_the_contract_and_two_file_helpers():
    used: dict[str, set[str]] = {}
    for path in (REPO / "labkit").rglob("*.py"):
        if "testing" not in path.relative_to(REPO).parts:  # the fake cloud plays the server's VM
            for module in server_imports_of(path):
                used.setdefault(module, set()).add(str(path.relative_to(REPO)))
    assert "production_server.contract" in used  # the scan reads labkit
    strays = {module: files for module, files in used.items()
              if module not in SERVER_MODULES_LABKIT_USES and module != "production_server"}
    assert not strays, f"labkit reaches into the server beyond its contract: {strays}"


def test_the_contract_needs_nothing_but_the_standard_library():
    tree = ast.parse((PACKAGE / "contract.py").read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
