"""Moving a run onto another definition: where its recorded position lands, or why it cannot.

Written on definition shapes (``Workflow.describe()``, as stored), not on step code, so that a
process without the workflow's code (the CLI) plans migrations exactly as an engine does when an
``auto_upgrade`` run resumes under a newer definition. The rules, applied to every entry of the
cursor (names first renamed by ``rename``):

1. A step the run is inside (a wait, a retry, a loop, a parallel, a branch, a nested workflow)
   must exist in the target, of the same kind, under the same chain of enclosing steps.
2. In each sequence the run goes on **before the step it is inside**, wherever that step now
   is; with none, **after the last step it completed there**, which must exist in that
   sequence of the target. Steps added before that point are not run by this run; steps added
   after it are; a removed step that the run is not inside does not matter.
3. Every completed step whose compensation is on the stack must exist in the target, under the
   same chain, with a compensation.
4. A branch of an ``if_`` that was taken must exist (by index); a parallel step keeps the
   completed and failed branches that still exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .._state import parse_wait_key, wait_key
from . import cursor


class _Place(NamedTuple):
    kind: str
    chain: tuple[str, ...]
    node: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Whether a run can move, and its cursor and waits if it can (``reasons`` if not)."""

    cursor: str | None
    waiting_for: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the run can move."""
        return self.cursor is not None


def places(shape: dict[str, Any]) -> dict[str, _Place]:
    """Every step of a definition shape by name, with its kind and its enclosing steps."""
    out: dict[str, _Place] = {}

    def visit(nodes: list[dict[str, Any]], chain: tuple[str, ...]) -> None:
        for node in nodes:
            out[node["name"]] = _Place(node["kind"], chain, node)
            inner = (*chain, node["name"])
            visit(node.get("steps", []), inner)
            for branch in node.get("branches", []):
                if "kind" in branch:  # a parallel's branch is a step
                    visit([branch], inner)
                else:  # an if_'s arm holds steps
                    visit(branch.get("steps", []), inner)

    visit(shape.get("steps", []), ())
    return out


def _names(path: str) -> list[str]:
    """The step names along a path (loop iterations and the position mark dropped)."""
    return [part.split("#", 1)[0] for part in path.rstrip("@").split("/") if part]


def _renamed(path: str, rename: Mapping[str, str]) -> str:
    if not rename:
        return path
    parts = []
    for part in path.split("/"):
        name, sep, rest = part.partition("#")
        parts.append(rename.get(name, name) + sep + rest)
    return "/".join(parts)


def plan(
    stored: str,
    target: dict[str, Any],
    *,
    rename: Mapping[str, str] | None = None,
    waiting_for: list[str] | None = None,
    source: dict[str, Any] | None = None,
    label: str = "the new definition",
) -> Plan:
    """Where the run whose cursor is ``stored`` goes on in ``target`` (see the module's rules).

    ``source`` (the run's own definition) lets a ``rename`` of a step it does not have be
    refused; ``waiting_for`` is renamed along.
    """
    rename = dict(rename or {})
    reasons: list[str] = []
    if source is not None:
        known = places(source)
        reasons += [
            f"rename: the run's definition has no step {old!r}"
            for old in rename
            if old not in known
        ]
    there = places(target)
    loaded = cursor.load(stored)
    old_nodes = loaded["n"]
    nodes: cursor.Nodes = {}
    for key, entry in old_nodes.items():
        if cursor.is_position(key):
            continue
        new_key = _renamed(key, rename)
        names = _names(new_key)
        place = there.get(names[-1])
        kind = entry.get("k")
        where = " inside " + "/".join(names[:-1]) if len(names) > 1 else ""
        if place is None:
            reasons.append(
                f"the run is at step {names[-1]!r} ({kind}{where}), which {label} does not have"
            )
            continue
        if place.kind != kind:
            reasons.append(
                f"step {names[-1]!r} is a {place.kind} in {label}, the run has it as a {kind}"
            )
            continue
        if place.chain != tuple(names[:-1]):
            now = "/".join(place.chain) or "the top level"
            reasons.append(
                f"step {names[-1]!r} moved from {'/'.join(names[:-1]) or 'the top level'} to {now}"
            )
            continue
        moved: dict[str, Any] = json.loads(json.dumps(entry))
        if kind == "parallel":
            branches = {b["name"] for b in place.node.get("branches", [])}
            for side in ("done", "failed"):
                moved[side] = [n for n in (rename.get(b, b) for b in moved[side]) if n in branches]
        elif kind == "if" and moved["b"] >= len(place.node.get("branches", [])):
            reasons.append(
                f"if {names[-1]!r} took branch {moved['b']}, which {label} does not have"
            )
            continue
        nodes[new_key] = moved  # type: ignore[assignment]
    reasons += _positions(old_nodes, nodes, there, target.get("steps", []), rename, label)
    comp: list[cursor.CompensationEntry] = []
    for path, name, index, item in loaded["c"]:
        new_name = str(rename.get(name, name))
        place = there.get(new_name)
        names = _names(_renamed(path, rename))
        if place is None or place.kind != "action" or place.chain != tuple(names[:-1]):
            reasons.append(f"completed step {name!r} (to compensate on failure) is not in {label}")
        elif place.node.get("compensate") is None:
            reasons.append(f"completed step {name!r} has no compensation in {label}")
        else:
            comp.append([_renamed(path, rename), new_name, index, item])
    if reasons:
        return Plan(None, reasons=list(dict.fromkeys(reasons)))
    waits = []
    for key in waiting_for or []:
        kind, name = parse_wait_key(key)
        waits.append(key if kind == "run" else wait_key(kind, rename.get(name, name)))
    return Plan(cursor.dump(nodes, comp, loaded["f"], loaded.get("h"), loaded.get("s")), waits)


def _positions(
    old: cursor.Nodes,
    nodes: cursor.Nodes,
    there: dict[str, _Place],
    root: list[dict[str, Any]],
    rename: Mapping[str, str],
    label: str,
) -> list[str]:
    """Set the position of every sequence the run is in (rule 2); the reasons it cannot."""
    reasons: list[str] = []
    prefixes = {key[:-1] for key in old if cursor.is_position(key)}
    prefixes |= {
        k.rsplit("/", 1)[0] + "/" if "/" in k else "" for k in old if not cursor.is_position(k)
    }
    for prefix in sorted(prefixes):
        new_prefix = _renamed(prefix, rename)
        body = _body(new_prefix, nodes, there) if new_prefix else root
        if body is None:  # the run is inside a step (maybe a nested workflow) that is gone
            inside_of = "/".join(_names(new_prefix))
            reasons.append(f"the run is inside {inside_of!r}, which {label} does not have there")
            continue
        names = [step["name"] for step in body]
        inside = [
            key[len(new_prefix) :]
            for key in nodes
            if key.startswith(new_prefix)
            and "/" not in key[len(new_prefix) :]
            and "#" not in key[len(new_prefix) :]
        ]
        at = next((names.index(n) for n in inside if n in names), None)
        position = cursor.position_at(old, cursor.position_key(prefix))
        if at is None and position is not None:
            last = rename.get(position["n"], position["n"])
            if last not in names:
                where = "/".join(_names(new_prefix)) or "the top level"
                reasons.append(
                    f"step {last!r}, the last the run completed in {where}, is not there in {label}"
                )
                continue
            at = names.index(last) + 1
        if at:
            nodes[cursor.position_key(new_prefix)] = cursor.Position(i=at, n=names[at - 1])
    return reasons


def _body(
    prefix: str, nodes: cursor.Nodes, there: dict[str, _Place]
) -> list[dict[str, Any]] | None:
    """The steps of the target's sequence at ``prefix`` (None if it has none there)."""
    names = _names(prefix)
    place = there.get(names[-1])
    if place is None or place.chain != tuple(names[:-1]):
        return None
    if place.kind == "if":
        decision = cursor.if_at(nodes, prefix.rstrip("/"))
        arms = place.node.get("branches", [])
        if decision is None or not 0 <= decision["b"] < len(arms):
            return None
        steps: list[dict[str, Any]] = arms[decision["b"]].get("steps", [])
        return steps
    found: list[dict[str, Any]] | None = place.node.get("steps")
    return found
