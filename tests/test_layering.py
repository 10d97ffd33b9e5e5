"""The package has no import cycle, counting the imports under ``TYPE_CHECKING`` too.

Every module of ``treadle/`` is parsed (not imported), so an import that only the type checker
follows is an edge as well: a cycle through one is still a cycle in the design.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import treadle

ROOT = Path(treadle.__file__).parent


def module_name(path: Path) -> str:
    """The dotted name of the module in ``path``."""
    parts = ["treadle", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The treadle modules that the module in ``path`` imports, wherever the import is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # ``from . import cursor`` imports a module, ``from .x import y`` a name of x.
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Every treadle module and the treadle modules it imports."""
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def test_the_import_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert "treadle._interpreter.walk" in graph["treadle._interpreter.composites"]
    assert "treadle._interpreter.cursor" in graph["treadle._interpreter.driver"]
    assert "treadle._errors" in graph["treadle._interpreter.driver"]
    assert "treadle._interpreter" not in graph["treadle._interpreter.waits"]  # only ``cursor``


def test_treadle_has_no_import_cycle_even_under_type_checking() -> None:
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
