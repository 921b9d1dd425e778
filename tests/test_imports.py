"""The import graph of ``model`` and ``service``: no cycles, layers that only look down, and
a light settings module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "service")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function bodies included), except under
    ``if TYPE_CHECKING:``; ``from a import b`` counts as ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def project_imports(path: Path, modules: set[str]) -> set[str]:
    return all_imports(path) & modules


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    modules = set(files)
    return {name: project_imports(path, modules) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert "model.commands" in graph["model.__main__"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_core_never_imports_the_command_layer():
    graph = import_graph()
    commands = {name for name in graph if name.startswith("model.commands")}
    entry_points = commands | {"model.__main__"}
    offenders = {name for name in set(graph) - entry_points if graph[name] & commands}
    assert not offenders


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        if (name := todo.pop()) not in seen:
            seen.add(name)
            todo += graph[name]
    return seen


def test_the_model_package_never_imports_the_service():
    graph = import_graph()
    offenders = {
        n for n in graph if n.startswith("model") and any(t.startswith("service") for t in graph[n])
    }
    assert not offenders


def test_the_service_core_does_not_need_a_web_framework():
    """The pipeline and the batcher, and all they import, are testable without FastAPI."""
    graph = import_graph()
    files = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    for core in ("service.pipeline", "service.batching"):
        for name in reachable(graph, core):
            web = {
                m for m in all_imports(files[name]) if m.split(".")[0] in ("fastapi", "starlette")
            }
            assert not web, f"{core} reaches {name}, which imports {sorted(web)}"


def test_only_one_model_module_reads_the_environment():
    """Our settings are read once (model/commands); model/backends/cpu.py reads oneDNN's own
    ONEDNN_MAX_CPU_ISA, to decide as the kernels it caps will run."""
    readers = [
        path.relative_to(REPO).as_posix()
        for path in sorted((REPO / "model").rglob("*.py"))
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert readers == ["model/backends/cpu.py", "model/commands/__init__.py"]


def test_reading_the_settings_does_not_load_torch():
    code = "import sys, service.config; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
