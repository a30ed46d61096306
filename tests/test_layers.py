"""The package's import graph: no cycles, and imports point down the layers of ARCHITECTURE.md.

Every module is parsed with ``ast`` (nothing is imported), and every ``import`` statement counts,
at module level or inside a function, relative or absolute: a function-level import that
closes a cycle is still a cycle, only hidden from the interpreter until the call.

How an import becomes an edge:
- ``import a.b.c`` and ``from a.b.c import name`` point at ``a.b.c``.
- ``from a.b import c`` points at the submodule ``a.b.c`` when there is one, otherwise at
  ``a.b`` itself (for a package: its ``__init__``, which then re-exports ``c``).
- Importing a submodule also runs its parents' ``__init__``; that is not an edge (it would make
  every package whose ``__init__`` re-exports a submodule a cycle with that submodule).
- ``if TYPE_CHECKING:`` blocks never run and are not edges.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import networkx as nx
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "openeo_deepfeatures"

# Cycles that exist on purpose for now, each with why. Anything else fails.
ALLOWED_CYCLES: list[frozenset[str]] = []


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for the package folder and the folders that
    ``[tool.setuptools.package-dir]`` maps into it (``udf/`` is ``openeo_deepfeatures.udf``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {PACKAGE: ROOT / PACKAGE}
    roots.update({name: ROOT / folder for name, folder in config.get("package-dir", {}).items()})
    found: dict[str, Path] = {}
    for name, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((name, *parts))] = path
    return found


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


@cache
def imported(name: str) -> tuple[tuple[str, str | None], ...]:
    """``(module, name)`` for every ``from module import name`` of the package in module
    ``name`` (relative ones made absolute), ``(module, None)`` for ``import module``."""
    known = modules()
    tree = ast.parse(known[name].read_text("utf-8"), filename=str(known[name]))
    skip = _type_checking_only(tree)
    base = name if _is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if _ours(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                source = f"{anchor}.{node.module}" if node.module else anchor
            else:
                source = node.module or ""
            if _ours(source):
                found += [(source, alias.name) for alias in node.names]
    unknown = sorted({module for module, _ in found if module not in known})
    assert not unknown, f"{name} imports {unknown}: not a module of the package"
    return tuple(found)


def imports_of(name: str) -> set[str]:
    """The package's modules that module ``name`` imports (at any depth of its code)."""
    known = modules()
    targets = {
        f"{module}.{attr}" if attr and f"{module}.{attr}" in known else module
        for module, attr in imported(name)
    }
    targets.discard(name)
    return targets


@cache
def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for name in modules():
        g.add_node(name)
        g.add_edges_from((name, target) for target in imports_of(name))
    return g


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_graph_sees_the_whole_package():
    """Guards the tests below against passing on an empty or partial graph."""
    g = graph()
    assert f"{PACKAGE}.udf.feature_embedding" in g and len(g.edges) > 100
    # inside a function (registry._overrides): ``from . import stac``, a submodule
    assert g.has_edge(f"{PACKAGE}.local.registry", f"{PACKAGE}.local.stac")
    # ``from .. import processes``: a subpackage, i.e. its __init__
    assert g.has_edge(f"{PACKAGE}.local.registry", f"{PACKAGE}.processes")
    # through a package-dir mapping
    assert g.has_edge(f"{PACKAGE}.indices.compute", f"{PACKAGE}.udf.spectral_indices")
    # ``from . import x``: the submodule x where there is one, else the __init__ defining x
    assert g.has_edge(PACKAGE, f"{PACKAGE}.errors")
    assert g.has_edge(f"{PACKAGE}.local.connection", f"{PACKAGE}.local")


def test_no_import_cycles():
    cycles = [
        sorted(component)
        for component in nx.strongly_connected_components(graph())
        if len(component) > 1 and frozenset(component) not in ALLOWED_CYCLES
    ]
    assert cycles == [], "import cycles (strongly connected components):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_allowed_cycles_still_exist():
    """An allow-list entry whose cycle is gone must be deleted, not kept as a licence."""
    components = {frozenset(c) for c in nx.strongly_connected_components(graph()) if len(c) > 1}
    assert [sorted(c) for c in ALLOWED_CYCLES if c not in components] == []


# Private names imported from another module, where one must be for now: an entry that is no
# longer needed fails the test below, so the list only shrinks.
ALLOWED_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def private_imports() -> set[tuple[str, str, str]]:
    """``(importer, module, name)`` for each ``_name`` imported from another module."""
    return {
        (name, module, attr)
        for name in modules()
        for module, attr in imported(name)
        if attr and attr.startswith("_") and not attr.startswith("__") and module != name
    }


def test_no_private_names_from_other_modules():
    """A helper two modules share is public, or lives in a module of its own."""
    assert sorted(private_imports() - ALLOWED_PRIVATE_IMPORTS) == []


def test_allowed_private_imports_still_exist():
    assert sorted(ALLOWED_PRIVATE_IMPORTS - private_imports()) == []


# ARCHITECTURE.md's layers, top first, where they hold today: a module may import its own layer
# and those below it, never (not even through another module) a layer above. Modules not named
# here (feature_cube, udps, downstream, bands, ...) are free, but a path through them still counts.
LAYERS = [
    ["cli"],
    ["server", "plugin", "client"],
    ["local"],
    ["processes"],
    ["features", "training"],
    ["encoder"],
    ["indices", "sentinel2", "stac", "io", "policy"],
    ["errors"],
]


def _members(layer: list[str]) -> set[str]:
    found = {n for n in modules() if any(_under(n, f"{PACKAGE}.{part}") for part in layer)}
    assert len({n.split(".")[1] for n in found}) == len(layer), f"a module of {layer} is gone"
    return found


@pytest.mark.parametrize("depth", range(1, len(LAYERS)), ids=lambda d: "+".join(LAYERS[d]))
def test_imports_point_down(depth):
    g = graph()
    above = set().union(*(_members(layer) for layer in LAYERS[:depth]))
    bad = {
        name: sorted(nx.descendants(g, name) & above) for name in sorted(_members(LAYERS[depth]))
    }
    assert {name: reached for name, reached in bad.items() if reached} == {}


@pytest.mark.parametrize("leaf", ["errors", "udf"])
def test_leaves_import_nothing_of_the_package(leaf):
    """``errors`` sits below everything; the UDF files run on backends without this package,
    each uploaded alone, so they do not import each other either."""
    names = [n for n in modules() if _under(n, f"{PACKAGE}.{leaf}")]
    assert names
    assert {n: sorted(imports_of(n)) for n in names if imports_of(n)} == {}
