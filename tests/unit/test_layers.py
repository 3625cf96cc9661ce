"""The layer table of docs/ARCHITECTURE.md, checked on the import graph of `hive_trio/` (read with `ast`).

Every import counts, module-level or inside a function (a lazy import is still a dependency), except
those under `if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hive_trio"
TOP_LEVEL_ALLOWED = {"__init__", "__main__", "daemon", "testing", "errors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute; `from a import b` counts as both `a` and `a.b`."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


MODULES: dict[str, set[str]] = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """`"<module> imports <target>"` for every module under `importers` importing anything under `forbidden`."""
    return sorted(
        f"{module} imports {target}"
        for module, targets in MODULES.items()
        if under(module, *importers)
        for target in targets
        if under(target, *forbidden)
    )


def test_the_graph_was_read() -> None:
    # A broken walk would make every rule below pass vacuously.
    assert "hive_trio.store.database" in MODULES
    assert "apsw" in MODULES["hive_trio.store.database"]
    assert "hive_trio.records" in MODULES["hive_trio.core.coordinator"]


def test_adapters_lifecycle_and_clients_never_import_a_store_or_apsw() -> None:
    assert (
        violations(
            (
                "hive_trio.sockets",
                "hive_trio.dashboard",
                "hive_trio.lifecycle",
                "hive_trio.clients",
                "hive_trio.federation",
                "hive_trio.service",
            ),
            ("hive_trio.store", "apsw"),
        )
        == []
    )


def test_stores_never_import_trio_the_hub_or_a_socket() -> None:
    # The exact rule: only store/database.py, the storage layer's trio adapter (its one writer thread,
    # reached through trio.to_thread, with the events and cancel scopes of group commit), imports trio.
    # Every store module (broker, roster, approvals, questions, state_lock) is plain APSW.
    trio_users = violations(("hive_trio.store",), ("trio",))
    assert [v for v in trio_users if not v.startswith("hive_trio.store.database ")] == []
    assert violations(("hive_trio.store",), ("hive_trio.core", "hive_trio.sockets", "hive_trio.dashboard")) == []


def test_records_import_nothing_else_of_ours() -> None:
    outside = [
        v
        for v in violations(("hive_trio.records",), ("hive_trio",))
        if not v.split(" imports ")[1].startswith("hive_trio.records")
    ]
    assert outside == []


def test_clients_never_import_the_core_a_store_or_the_daemon() -> None:
    assert violations(("hive_trio.clients",), ("hive_trio.core", "hive_trio.store", "hive_trio.daemon")) == []


def test_the_package_top_level_holds_only_the_assembly_modules() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top - TOP_LEVEL_ALLOWED == set()


def test_examples_up_and_the_cli_form_no_cycle() -> None:
    # `up` takes its defaults from cli.discovery, which must never import the rest of the CLI or the examples.
    assert violations(("hive_trio.cli.discovery",), ("hive_trio.examples", "hive_trio.daemon")) == []
    assert [t for t in MODULES["hive_trio.cli.discovery"] if under(t, "hive_trio.cli")] == []
    from_cli = [t for t in MODULES["hive_trio.examples.up"] if under(t, "hive_trio.cli")]
    assert from_cli and all(under(t, "hive_trio.cli.discovery") for t in from_cli)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_dispatch_by_attribute_name(path: Path) -> None:
    # `getattr(obj, f"_{name}")` hides handlers from mypy and from "find usages"; match on the type instead.
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            assert len(node.args) < 2 or not isinstance(node.args[1], ast.JoinedStr), ast.unparse(node)


def test_the_harness_reaches_the_hive_only_as_a_client() -> None:
    # `hive-trio agent` runs in the agent's process: its socket and its channel are all it has of the daemon.
    inner = ("hive_trio.core", "hive_trio.store", "hive_trio.daemon", "hive_trio.lifecycle", "hive_trio.dashboard")
    assert violations(("hive_trio.agent",), (*inner, "hive_trio.sockets", "hive_trio.cli")) == []
