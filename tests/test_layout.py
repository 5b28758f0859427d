"""The package's shape: no import circles, no module too long to read, no technique named in generic code."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnnvis_tasks"
MAX_LINES = 450


def module_files() -> dict[str, Path]:
    """Module name -> its file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (at the top or in a
    function: a function's import is a dependency too).  ``from package import module``
    depends on the module; ``from package import name`` on the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_the_circle_finder_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_imports_itself_in_a_circle():
    modules = module_files()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["cnnvis_tasks.workflow.plan"], "the import reader found nothing: it is broken"
    assert import_circles(graph) == []


@pytest.mark.parametrize("name", sorted(module_files()))
def test_no_module_is_too_long_to_read(name):
    lines = module_files()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by what its parts do"


GENERIC = ("workflow", "run", "io", "render", "gallery", "models", "cli", "technique")
# A made-up labelled data set and the model trained on it, with what cnnvis should say of
# them (bench/trained_model.py): it runs techniques by name on purpose.
NOT_GENERIC = ("cnnvis_tasks.io.synthetic",)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_generic_code_names_no_technique():
    """The workflow, the runner, file I/O, rendering, the gallery, model loading and the
    commands know techniques only through their descriptions: they import no technique
    module (the registry aside) and compare nothing with a technique's name."""
    from cnnvis_tasks.techniques import all_techniques

    names = {technique.name for technique in all_techniques()}
    modules = module_files()
    found = []
    for name, path in modules.items():
        if name == "cnnvis_tasks" or name.split(".")[1] not in GENERIC or name.startswith(NOT_GENERIC):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module in imports_of(name, path, modules):
            if module.startswith("cnnvis_tasks.techniques."):
                found.append(f"{name} imports {module}")
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
                found.append(f"{name}:{node.lineno} names the technique {node.value!r}")
    assert found == []
