"""Import boundaries, read from the source's AST (nothing here imports the modules it checks).

- the pure core (corral.domain, corral.scheduler) uses only the standard library, itself and
  corral.errors: no database, no web framework, no I/O library;
- corral/worker/executor.py uses only the standard library, so it can be shipped to a bare host;
- corral/fleet/remote.py, shipped with it, uses only the standard library and the executor.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "corral"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
CORE_ALLOWED = ("corral.domain", "corral.scheduler", "corral.errors")
CORE_FILES = sorted(
    [*SRC.joinpath("domain").rglob("*.py"), *SRC.joinpath("scheduler").rglob("*.py")]
)
EXECUTOR = SRC / "worker" / "executor.py"
# The executor's own helpers, shipped with it: standard library only, like the executor.
EXECUTOR_HELPERS = (
    "corral.worker.askpass",
    "corral.worker.limits",
    "corral.worker.masking",
    "corral.worker.sandbox",
    "corral.worker.tracking",
    "corral.worker.watchdog",
    "corral.worker.workdirs",
)
STDLIB_WORKER_FILES = [
    EXECUTOR,
    *(SRC / "worker" / f"{m.rsplit('.', 1)[1]}.py" for m in EXECUTOR_HELPERS),
    SRC / "worker" / "runas.py",
]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (functions and TYPE_CHECKING blocks too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, src)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def is_stdlib(name: str) -> bool:
    return name.split(".")[0] in STDLIB


def core_allowed(name: str) -> bool:
    return is_stdlib(name) or any(name == a or name.startswith(a + ".") for a in CORE_ALLOWED)


def test_the_core_files_are_found() -> None:
    names = {p.name for p in CORE_FILES}
    assert {"states.py", "runspec.py", "labels.py", "graph.py", "placement.py"} <= names
    assert EXECUTOR.is_file()


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_pure_core_imports_only_stdlib_and_itself(path: Path) -> None:
    bad = [
        f"{path.name}:{line} imports {name}"
        for line, name in imports(path)
        if not core_allowed(name)
    ]
    assert bad == []


@pytest.mark.parametrize("path", STDLIB_WORKER_FILES, ids=lambda p: p.name)
def test_the_executor_imports_only_the_standard_library(path: Path) -> None:
    """The executor and its helpers: the standard library, and the helpers (all shipped to
    fleet hosts together)."""
    found = imports(path)
    assert found, "no imports found: is the AST walk broken?"
    allowed = EXECUTOR_HELPERS if path.name != "runas.py" else ()
    bad = [
        f"{path.name}:{line} imports {name}"
        for line, name in found
        if not is_stdlib(name) and name not in allowed
    ]
    assert bad == []


def test_what_runs_on_a_fleet_host_imports_only_the_standard_library_and_the_executor() -> None:
    """The executor and the helpers shipped with it (`transport._shipped`)."""
    remote = SRC / "fleet" / "remote.py"
    found = imports(remote)
    assert found, "no imports found: is the AST walk broken?"
    bad = [
        f"remote.py:{line} imports {name}"
        for line, name in found
        if not is_stdlib(name) and name not in ("corral.worker.executor", *EXECUTOR_HELPERS)
    ]
    assert bad == []


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    """The rule itself: third-party and non-core corral imports are caught, even nested ones."""
    pkg = tmp_path / "corral" / "domain"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text(
        "import os\n"
        "from corral.errors import NotFound\n"
        "from . import labels\n"
        "def f():\n"
        "    import sqlalchemy\n"
        "    from ..store import engine\n"
        "if False:\n"
        "    import fastapi.routing\n"
    )
    found = imports(f, tmp_path / "corral")
    assert sorted(found) == [
        (1, "os"),
        (2, "corral.errors"),
        (3, "corral.domain"),
        (5, "sqlalchemy"),
        (6, "corral.store"),
        (8, "fastapi.routing"),
    ]
    assert sorted(n for _, n in found if not core_allowed(n)) == [
        "corral.store",
        "fastapi.routing",
        "sqlalchemy",
    ]
    assert [n for _, n in found if not is_stdlib(n)] == [
        n for _, n in found if n.split(".")[0] in ("corral", "sqlalchemy", "fastapi")
    ]
    assert not is_stdlib("psycopg") and is_stdlib("os.path") and is_stdlib("__future__")
