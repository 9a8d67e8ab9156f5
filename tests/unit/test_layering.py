"""Which parts of the package may import which, followed from module to module.

Every rule holds for what a module loads, not only for what it names: the test builds the
import graph of `platform/tandem/**/*.py`, `apps/*.py` and `jobs/*.py` (imports inside
functions included, since they load the module when called; `from x import y` is module
`x.y` when that is a module, else `x`; importing `x.y` also runs the package `x`) and checks
each rule on the transitive closure, naming the chain of modules that breaks it.

- Serving gets the local stack's facts (pool resources, Ray's environment) through
  `tandem.settings`: nothing under `tandem/serve/` or `apps/` reaches `tandem.stack`, so a
  serving replica on a real cluster never loads the local stack's process management.
- One performance model at the bottom: `tandem.perf` reaches nothing but itself and the facts
  it is built on (`tandem.catalog` and what that uses, `tandem.config`, `tandem.errors`);
  `routing` imports `perf` but never reaches `planner`, and the planner sits above both.
- Telemetry sits below what reads it: the triggers, the rollout and the retraining loop
  (`tandem.watch`) import `tandem.telemetry`, and telemetry reaches none of them (nor serving,
  routing, the planner, training, the stack or the command line).
- The library never reaches the command line (`tandem.cli`, `tandem.commands`,
  `tandem.planner.cli`), and neither do the Ray jobs and Serve apps: they call the library.
- The demos (`tandem.demos`) sit on top, beside the command line: only it runs them.
- No cycle between the top-level parts of the package (`serve`, `routing`, `perf`,
  `planner`, `telemetry`, `train`, `rollout`, `triggers`, `watch`, ...; a module at the top,
  like `tandem.ray_jobs`, is a part of its own): facts every layer uses (a version's tag names,
  the commit that trains, Ray's environment) live in the bottom modules (`tandem.registry`,
  `tandem.settings`), not in a layer that would have to import its caller.
- No private name (a leading underscore) is imported from another part.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "platform" / "tandem"


def _module_name(path: Path) -> str:
    if path.is_relative_to(PACKAGE):
        parts = ("tandem", *path.relative_to(PACKAGE).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _loaded_with(name: str, modules: set[str]) -> set[str]:
    """`name` and the packages above it, which Python runs first (the empty root aside)."""
    parts = name.split(".")
    return {".".join(parts[:end]) for end in range(2, len(parts) + 1)} & modules


def _imports(path: Path, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    found |= _loaded_with(name, modules)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if name in modules or node.module in modules:
                    found |= _loaded_with(name if name in modules else node.module, modules)
    return found


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Module -> the modules of the repository it imports."""
    files = sorted(PACKAGE.rglob("*.py"))
    files += sorted((REPO / "apps").glob("*.py")) + sorted((REPO / "jobs").glob("*.py"))
    paths = {_module_name(path): path for path in files}
    assert len(paths) > 100 and "tandem.serve.router" in paths  # the walk found the package
    return {name: frozenset(_imports(path, set(paths)) - {name}) for name, path in paths.items()}


def _chain_to(start: str, forbidden: Callable[[str], bool]) -> list[str] | None:
    """The shortest chain of imports from `start` to a forbidden module, if any."""
    graph, came_from = _graph(), {start: start}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        if forbidden(module) and module != start:
            chain = [module]
            while chain[-1] != start:
                chain.append(came_from[chain[-1]])
            return chain[::-1]
        for imported in sorted(graph[module] - came_from.keys()):
            came_from[imported] = module
            queue.append(imported)
    return None


def _breaks(source: Callable[[str], bool], forbidden: Callable[[str], bool]) -> list[str]:
    """Each chain by which a source module reaches a forbidden one, from the last source
    module on it (one break, reached from many modules, is named once)."""
    found = set()
    for start in filter(source, _graph()):
        chain = _chain_to(start, forbidden)
        if chain:
            last = max(index for index, module in enumerate(chain[:-1]) if source(module))
            found.add(" -> ".join(chain[last:]))
    return sorted(found)


def _assert_none(breaks: list[str]) -> None:
    assert not breaks, "imports that break the rule:\n" + "\n".join(breaks)


def _under(*prefixes: str) -> Callable[[str], bool]:
    return lambda module: any(module == p or module.startswith(f"{p}.") for p in prefixes)


def test_serving_code_does_not_reach_the_local_stack():
    _assert_none(_breaks(_under("tandem.serve", "apps"), _under("tandem.stack")))


def test_routing_does_not_reach_the_planner():
    _assert_none(_breaks(_under("tandem.routing"), _under("tandem.planner")))


def test_perf_sits_at_the_bottom():
    below = _under("tandem.perf", "tandem.catalog", "tandem.config", "tandem.errors")
    _assert_none(_breaks(_under("tandem.perf"), lambda module: not below(module)))


def test_telemetry_does_not_reach_the_layers_that_read_it():
    above = _under("tandem.triggers", "tandem.rollout", "tandem.watch", "tandem.demos",
                   "tandem.serve", "tandem.routing", "tandem.planner", "tandem.train",
                   "tandem.stack", "tandem.cli", "tandem.commands")
    _assert_none(_breaks(_under("tandem.telemetry"), above))


def test_the_library_jobs_and_apps_do_not_reach_the_command_line():
    command_line = _under("tandem.cli", "tandem.commands", "tandem.planner.cli")
    _assert_none(_breaks(lambda module: not command_line(module), command_line))


def test_only_the_command_line_runs_the_demos():
    demos, command_line = _under("tandem.demos"), _under("tandem.cli", "tandem.commands")
    offenders = [f"{module} imports {', '.join(sorted(filter(demos, imported)))}"
                 for module, imported in sorted(_graph().items())
                 if not demos(module) and not command_line(module) and any(map(demos, imported))]
    _assert_none(offenders)


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to (`tandem.serve.ingress.app`:
    `tandem.serve`); an entrypoint (`apps.llm_app`) is a part of its own."""
    return ".".join(module.split(".")[:2]) if module.startswith("tandem.") else module


def test_no_cycle_between_the_parts_of_the_package():
    edges: dict[tuple[str, str], tuple[str, str]] = {}  # part -> part: one module edge
    for module, imported in sorted(_graph().items()):
        for other in sorted(imported, key=lambda name: (-name.count("."), name)):
            if _part(module) != _part(other):
                edges.setdefault((_part(module), _part(other)), (module, other))
    parts: dict[str, set[str]] = {}
    for above, below in edges:
        parts.setdefault(above, set()).add(below)
    cycles = set()
    for above, below in edges:
        came_from, queue = {below: below}, deque([below])
        while queue and above not in came_from:
            part = queue.popleft()
            for nxt in sorted(parts.get(part, set()) - came_from.keys()):
                came_from[nxt] = part
                queue.append(nxt)
        if above in came_from:
            loop = [above]
            while loop[-1] != below:
                loop.append(came_from[loop[-1]])
            loop = [above, *loop[::-1]]
            start = loop.index(min(loop[:-1]))  # the same cycle, found from each part, once
            loop = loop[start:-1] + loop[:start + 1]
            steps = "; ".join(" imports ".join(edges[step]) for step in zip(loop, loop[1:]))
            cycles.add(f"{' -> '.join(loop)} ({steps})")
    _assert_none(sorted(cycles))


def test_no_private_name_is_imported_from_another_part():
    """A leading underscore says "only here": a part that needs another's helper gets a
    public name for it (`tandem.registry.mlflow_client`, not `_client`)."""
    files = sorted(PACKAGE.rglob("*.py"))
    files += sorted((REPO / "apps").glob("*.py")) + sorted((REPO / "jobs").glob("*.py"))
    offenders = []
    for path in files:
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tandem") \
                    and _part(node.module) != _part(module):
                offenders += [f"{module} imports {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_")]
    _assert_none(offenders)
