"""The rules of docs/ARCHITECTURE.md, checked by reading the code (ast), so they stay true:

* no import cycle among the modules of ``genre_batch`` and ``pipelines``;
* of ``genre_batch``, only the CLI wing (``cli``, ``commands``) imports ``pipelines``; the
  library imports no Ray;
* ``genre_batch.entry`` (what the CLI and the jobs share) imports nothing of this project;
* no job calls another job's entry point: ``main``, ``from_args``, ``add_arguments`` or a
  function the CLI imports from a job (``run_ingest``, ...);
* no function is longer than 80 lines, its docstring not counted.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("genre_batch", "pipelines")
CLI_WING = {"genre_batch.cli", "genre_batch.commands"}
LEAF = "genre_batch.entry"
ENTRY_POINT_NAMES = {"main", "from_args", "add_arguments"}
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    module: str  # the module imported from (resolved to one of ours, or a third-party name)
    names: tuple[str, ...]  # the names taken from it (empty for ``import x``)
    alias: str | None  # the local name of ``import x.y as z`` / ``from x import y``
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def imports_of(path: Path | str, modules: dict[str, Path]) -> list[Import]:
    """Every import in a file or source text (module level and inside functions), resolved
    to our modules: ``from genre_batch import schemas`` is an import of ``genre_batch.schemas``."""
    found: list[Import] = []
    source = path.read_text() if isinstance(path, Path) else path
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, (), alias.asname or alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.append(Import(submodule, (), alias.asname or alias.name, node.lineno))
                else:
                    found.append(Import(node.module, (alias.name,), alias.asname or alias.name, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: {imp.module for imp in imports_of(path, modules) if imp.module in modules} - {name}
            for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_the_jobs_and_the_library_imports_no_ray():
    modules = our_modules()
    for name, path in modules.items():
        if not name.startswith("genre_batch"):
            continue
        imported = {imp.module for imp in imports_of(path, modules)}
        if name not in CLI_WING:
            assert not {m for m in imported if m.split(".")[0] == "pipelines"}, name
        assert not {m for m in imported if m.split(".")[0] == "ray"}, name


def test_the_entry_helpers_import_nothing_of_ours():
    modules = our_modules()
    ours = {imp.module for imp in imports_of(modules[LEAF], modules) if imp.module.split(".")[0] in PACKAGES}
    assert ours == set()


def cli_entry_points(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Job module -> the names that are its entry points: main, from_args, add_arguments and
    whatever the CLI wing imports from it."""
    jobs = {name for name in modules if name.startswith("pipelines.") and not name.split(".")[-1].startswith("_")}
    points = {job: set(ENTRY_POINT_NAMES) for job in jobs}
    for wing in CLI_WING:
        for imp in imports_of(modules[wing], modules):
            if imp.module in points:
                points[imp.module].update(imp.names)
    return points


def entry_point_calls(source: str, this: str, modules: dict[str, Path], points: dict[str, set[str]]) -> list[str]:
    """What the job ``this`` (its source text) takes from another job that is an entry point:
    by name (``from pipelines.train import run_train``) or as a module attribute (``train.run_train``)."""
    taken: list[str] = []
    module_aliases: dict[str, str] = {}
    for imp in imports_of(source, modules):
        if imp.module not in points or imp.module == this:
            continue
        if imp.names:
            taken += [f"{imp.module}.{n} (line {imp.line})" for n in imp.names if n in points[imp.module]]
        elif imp.alias:
            module_aliases[imp.alias] = imp.module
    for node in ast.walk(ast.parse(source)):
        # ``import pipelines.train`` binds ``pipelines``; ``from pipelines import train`` binds ``train``.
        dotted = ast.unparse(node) if isinstance(node, ast.Attribute) else ""
        for alias, module in module_aliases.items():
            target = module if alias == module else alias
            for name in points[module]:
                if dotted == f"{target}.{name}":
                    taken.append(f"{module}.{name} (line {node.lineno})")
    return taken


def test_no_job_calls_another_jobs_entry_point():
    modules = our_modules()
    points = cli_entry_points(modules)
    assert {"run_ingest", "run_train", "run_index"} <= points["pipelines.ingest"] | points["pipelines.train"] | \
        points["pipelines.index"]  # the demo command's imports are found
    calls = {name: entry_point_calls(path.read_text(), name, modules, points)
             for name, path in modules.items() if name in points}
    assert {name: taken for name, taken in calls.items() if taken} == {}


def test_the_entry_point_rule_catches_every_spelling():
    modules = our_modules()
    points = cli_entry_points(modules)
    source = ("from pipelines.train import run_train\nimport pipelines.index\nfrom pipelines import ingest\n"
              "def f():\n    run_train('r')\n    pipelines.index.main([])\n    ingest.from_args(None)\n")
    found = entry_point_calls(source, "pipelines.nightly", modules, points)
    assert [f.split(" ")[0] for f in found] == [
        "pipelines.train.run_train", "pipelines.index.main", "pipelines.ingest.from_args"]


def function_lengths() -> list[tuple[int, str]]:
    """(lines, where) of every function, its docstring not counted."""
    out = []
    for name, path in our_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                docstring = (body[0].end_lineno - body[0].lineno + 1
                             if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                             and isinstance(body[0].value.value, str) else 0)
                lines = node.end_lineno - node.lineno + 1 - docstring  # type: ignore[operator]
                out.append((lines, f"{name}.{node.name} (line {node.lineno})"))
    return out


def test_no_function_is_longer_than_80_lines():
    assert sorted(f for f in function_lengths() if f[0] > MAX_FUNCTION_LINES) == []
