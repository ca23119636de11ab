"""The import graph keeps to the layers of docs/architecture.md (Code map): policies lie
beneath readiness, which evaluates against them, and readiness beneath the lifecycle and
pilots, which evaluate and store it. A write that must run a lower package first and a
higher one after (publishing a policy) is a flow in app/flows/.

Read from the source rather than from what importing loads, so an import inside a function
counts as much as one at the top."""

import ast
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import project_path

ROOT = project_path()
# Package: what neither it nor anything it imports may import. Routers compose packages
# for HTTP (the policies router calls the publication flow), so they answer only for
# what they import themselves.
BENEATH = {
    "app.policies": ("app.readiness", "app.lifecycle", "app.pilots"),
    "app.readiness": ("app.lifecycle", "app.pilots"),
}
# Shared words only: anything may import it, and it imports nothing of the app.
BOTTOM = "app.vocabulary"


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted((ROOT / "app").rglob("*.py"))}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


@cache
def imports(module: str) -> frozenset[str]:
    """The app's modules that `module` imports, a package's own module included when a
    module inside it is imported."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for name in named:
        parts = name.split(".")
        found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return frozenset(name for name in found & MODULES.keys() if name != module)


def _path_to(start: str, forbidden: tuple[str, ...]) -> list[str] | None:
    """A chain of imports from `start` to a module under `forbidden`, if there is one."""
    came_from: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        module = queue.pop(0)
        if any(_within(module, package) for package in forbidden):
            chain = [module]
            while (previous := came_from[chain[-1]]) is not None:
                chain.append(previous)
            return chain[::-1]
        for imported in sorted(imports(module)):
            if imported not in came_from:
                came_from[imported] = module
                queue.append(imported)
    return None


def test_the_graph_is_read() -> None:
    assert "app.readiness.service" in imports("app.lifecycle.service")
    assert "app.readiness.inputs" in imports("app.pilots.service")
    assert "app.flows.policy_publication" in imports("app.policies.router")


@pytest.mark.parametrize("package", sorted(BENEATH))
def test_a_lower_package_does_not_import_a_higher_one(package: str) -> None:
    forbidden = BENEATH[package]
    for module in sorted(name for name in MODULES if _within(name, package)):
        direct = sorted(
            name for name in imports(module) if any(_within(name, up) for up in forbidden)
        )
        assert not direct, f"{module} imports {direct}"
        if module.endswith(".router"):
            continue
        chain = _path_to(module, forbidden)
        assert chain is None, " -> ".join(chain)


def test_the_shared_vocabulary_imports_nothing_of_the_app() -> None:
    assert imports(BOTTOM) == frozenset()
