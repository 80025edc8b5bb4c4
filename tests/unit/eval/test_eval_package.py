"""``ragtune_eval`` is a client of the gateway: none of its modules imports the server package
(``ragtune_gateway``), so installing the CLI never pulls in server code."""

from __future__ import annotations

import ast
from pathlib import Path

import ragtune_eval

SERVER = "ragtune_gateway"


def imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_walk_sees_every_import_form() -> None:
    source = "import ragtune_gateway.app\nfrom ragtune_gateway import rag\ndef f():\n    import ragtune_gateway\n"
    assert {"ragtune_gateway.app", "ragtune_gateway", "ragtune_gateway.rag"} <= imported_modules(source)


def test_ragtune_eval_imports_nothing_of_the_gateway() -> None:
    root = Path(ragtune_eval.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) >= 10  # the harness and the CLI, not an empty folder
    offending = {
        str(path.relative_to(root)): sorted(m for m in imported_modules(path.read_text()) if m.split(".")[0] == SERVER)
        for path in modules
    }
    assert {path: found for path, found in offending.items() if found} == {}
