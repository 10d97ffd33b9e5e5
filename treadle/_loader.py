"""Finding a user's workflows (and Engine) from ``MODULE:ATTR``, shared by the CLI, the worker
and the web server."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ._codec import Codec
from ._engine import Engine
from ._errors import TreadleError
from ._nodes import Workflow


class LoadError(TreadleError, ValueError):
    """``MODULE:ATTR`` does not name workflows; the message says why."""


@dataclass(frozen=True)
class App:
    """What ``MODULE:ATTR`` names: its workflows, and the :class:`Engine` when it names one
    (whose persistence is then the database to use)."""

    spec: str
    workflows: list[Workflow]
    engine: Engine | None = None


def load_workflows(spec: str) -> list[Workflow]:
    """The workflows that ``MODULE:ATTR`` names (an Engine, a Workflow or a collection of them),
    or, for a plain ``MODULE``, every Workflow defined at its top level."""
    return load_app(spec).workflows


def load_app(spec: str) -> App:
    """What ``MODULE:ATTR`` names, as :func:`load_workflows` reads it, with the Engine if any."""
    module_name, sep, attr = spec.partition(":")
    if not module_name or (sep and not attr):
        raise LoadError(f"{spec!r} is not MODULE:ATTR (such as 'shop.workflows:engine')")
    module = _import(spec, module_name, "workflows")
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, Workflow)]
        if not found:
            raise LoadError(f"cannot load workflows from {spec!r}: the module defines no Workflow")
        return App(spec, found)
    target = _attribute(module, spec, attr, "workflows")
    return App(spec, workflows_of(target, spec), target if isinstance(target, Engine) else None)


def workflows_of(target: object, spec: str) -> list[Workflow]:
    """The workflows in an Engine, a Workflow, or a list/tuple/set/dict of Workflows."""
    found: list[Workflow]
    if isinstance(target, Engine):
        found = list(target.workflows.values())
    elif isinstance(target, Workflow):
        found = [target]
    elif isinstance(target, Mapping) and all(isinstance(w, Workflow) for w in target.values()):
        found = list(target.values())
    elif isinstance(target, list | tuple | set | frozenset) and all(
        isinstance(w, Workflow) for w in target
    ):
        found = list(target)
    else:
        raise LoadError(
            f"cannot load workflows from {spec!r}: it is a {type(target).__name__}, not an "
            "Engine, a Workflow or a list of Workflows"
        )
    if not found:
        raise LoadError(f"cannot load workflows from {spec!r}: it holds none")
    return found


def load_codec(spec: str) -> Codec:
    """The :class:`Codec` that ``MODULE:ATTR`` names: a codec object, or a class or function
    that makes one when called without arguments (``--codec``, ``TREADLE_CODEC``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LoadError(f"{spec!r} is not MODULE:ATTR (such as 'shop.secrets:codec')")
    target = _attribute(_import(spec, module_name, "a codec"), spec, attr, "a codec")
    if isinstance(target, type) or (not isinstance(target, Codec) and callable(target)):
        target = target()
    if isinstance(target, type) or not isinstance(target, Codec):
        raise LoadError(
            f"cannot load a codec from {spec!r}: a {type(target).__name__} has no "
            "encode(text) and decode(text) methods"
        )
    return target


def _import(spec: str, module_name: str, what: str) -> ModuleType:
    """Import ``module_name`` (the current directory importable), or :class:`LoadError`."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise LoadError(
                f"cannot load {what} from {spec!r}: no module named {exc.name!r} (looked in "
                "the current directory "
                "and on the Python path)"
            ) from None
        raise LoadError(f"cannot load {what} from {spec!r}: {exc}") from None
    except Exception as exc:
        raise LoadError(
            f"cannot load {what} from {spec!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return module


def _attribute(module: ModuleType, spec: str, attr: str, what: str) -> Any:
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise LoadError(f"cannot load {what} from {spec!r}: no attribute {attr!r}")
        target = getattr(target, part)
    return target
