"""The house's layout: every import of ours goes through ``nmc``, and the rooms import only
what docs/architecture.md allows (isa ← backends ← runtime ← compiler)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("isa", "backends", "compiler", "runtime")
# what each room may import of ours; compiler → runtime only where listed below
ALLOWED = {"isa": set(), "backends": {"isa"}, "runtime": {"isa", "backends"},
           "compiler": {"isa", "backends", "compiler"}}
# the compiler's separate steps that run programs or cost them: verification, conformance,
# redundancy's measured sensitivity,
# the command line, reports (timing and energy of a program) and the driver's CompiledProgram
COMPILER_USES_RUNTIME = {"verify.py", "conformance.py", "redundancy.py", "replication.py", "sweep.py", "cli/commands.py", "cli/summary.py", "driver.py",
                         "reports/report.py", "reports/render.py"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _sources():
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            yield room, path
    yield "nmc", ROOT / "__init__.py"


@pytest.mark.parametrize("room,path", list(_sources()), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_imports_follow_the_dependency_rules(room, path):
    for line, module in _imports(path):
        top = module.split(".")[0]
        assert top not in ROOMS, f"{path.name}:{line} imports {module}: ours are imported as nmc.{module}"
        if top != "nmc" or room == "nmc":
            continue
        parts = module.split(".")
        target = parts[1] if len(parts) > 1 else "nmc"
        allowed = ALLOWED[room] | {room}
        if room == "compiler" and str(path.relative_to(ROOT / "compiler")) in COMPILER_USES_RUNTIME:
            allowed = allowed | {"runtime"}
        assert target in allowed, f"{path.relative_to(ROOT)}:{line} imports {module}: {room}/ may import {sorted(allowed)}"


def test_every_subpackage_is_installed():
    """A new package directory that pyproject.toml does not list would be missing from the wheel."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {"nmc"} | {"nmc." + ".".join(p.parent.relative_to(ROOT).parts)
                         for room in ROOMS for p in (ROOT / room).rglob("__init__.py")}
    assert listed == present
