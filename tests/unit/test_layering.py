"""Which parts of the package may import which.

- Serving gets the local stack's facts (pool resources, Ray's environment) through
  `tandem.settings`: nothing under `tandem/serve/` or `apps/` imports `tandem.stack`, so a
  serving replica on a real cluster never loads the local stack's process management.
- One performance model at the bottom: `tandem.perf` imports no other layer, `routing`
  imports `perf` but not `planner`, and the planner sits above both. No cycle.
- Telemetry sits below what reads it: the triggers, the rollout and the retraining loop
  (`tandem.watch`) import `tandem.telemetry`, never the other way round.
- The library never imports the command line (`tandem.cli`, `tandem.commands`,
  `tandem.planner.cli`), and neither do the Ray jobs and Serve apps: they call the library.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "platform" / "tandem"


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_serving_code_does_not_import_the_local_stack():
    files = sorted((PACKAGE / "serve").rglob("*.py"))
    files += sorted((REPO / "apps").glob("*.py"))
    assert len(files) > 10  # the walk found the package
    offenders = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path)
                                                     if m == "tandem.stack")
                 for path in files}
    assert {path: found for path, found in offenders.items() if found} == {}


def _imports_under(folder: str, prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files  # the walk found the package
    found = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path)
                                                 if m.startswith(prefixes))
             for path in files}
    return {path: modules for path, modules in found.items() if modules}


def test_routing_does_not_import_the_planner():
    assert _imports_under("routing", ("tandem.planner",)) == {}


def test_perf_sits_at_the_bottom():
    above = ("tandem.routing", "tandem.planner", "tandem.serve", "tandem.telemetry",
             "tandem.train", "tandem.stack", "tandem.cli", "tandem.commands")
    assert _imports_under("perf", above) == {}


def test_telemetry_does_not_import_the_layers_that_read_it():
    above = ("tandem.triggers", "tandem.rollout", "tandem.watch", "tandem.story",
             "tandem.serve", "tandem.routing", "tandem.planner", "tandem.train",
             "tandem.stack", "tandem.cli", "tandem.commands")
    assert _imports_under("telemetry", above) == {}


COMMAND_LINE = ("tandem.cli", "tandem.commands", "tandem.planner.cli")


def test_the_library_jobs_and_apps_do_not_import_the_command_line():
    command_line = {PACKAGE / "cli.py", PACKAGE / "planner" / "cli.py"}
    files = [path for path in sorted(PACKAGE.rglob("*.py"))
             if path not in command_line and "commands" not in path.relative_to(PACKAGE).parts]
    files += sorted((REPO / "jobs").glob("*.py")) + sorted((REPO / "apps").glob("*.py"))
    assert len(files) > 50  # the walk found the package
    offenders = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path)
                                                     if m.startswith(COMMAND_LINE))
                 for path in files}
    assert {path: found for path, found in offenders.items() if found} == {}
