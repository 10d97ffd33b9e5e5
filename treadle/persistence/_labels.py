"""Transaction scripts for labels and search: a run's labels are kept twice, as a JSON object on
the run (``runs.labels``, for display) and one row a label in ``run_labels`` (for search by
label); both in plain text, never through a codec, since search reads them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .._search import RunFilter, query_params
from ._records import RunRecord
from ._sql import Tx


def insert_labels(tx: Tx, run_id: str, labels: dict[str, str]) -> None:
    """Index the labels of a run being created."""
    for key, value in labels.items():
        tx.execute("insert_label", run_id=run_id, key=key, value=value)


def replace_labels(tx: Tx, run_id: str, token: int, labels: dict[str, str]) -> None:
    """Make ``labels`` the run's labels (a checkpoint fenced by ``token`` has been written in
    this transaction already, so the lease is known to hold)."""
    tx.execute("set_labels", id=run_id, token=token, labels=json.dumps(labels))
    tx.execute("delete_labels", run_id=run_id)
    insert_labels(tx, run_id, labels)


def search_runs(
    tx: Tx, flt: RunFilter, after: tuple[datetime, str] | None, limit: int
) -> list[RunRecord]:
    """Entered through ``run_labels`` when a label is asked for that few runs have (fewer than
    :data:`FEW`: reading them all and sorting is cheap), else through ``runs_workflow`` when a
    workflow is, else through ``runs_created`` (the labels are then checked run by run, and a
    label that many runs have is met within a few thousand rows)."""
    params = query_params(flt, after)
    if flt.labels and _few(tx, params):
        statement = "search_runs_by_label"
    elif flt.workflow is not None:
        statement = "search_runs_by_workflow"
    else:
        statement = "search_runs"
    rows = tx.all(statement, limit=limit, **params)
    return [RunRecord.from_row(r) for r in rows]


FEW = 5_000
"""Below this many runs with the first label asked for, a search is driven by that label."""


def _few(tx: Tx, params: dict[str, Any]) -> bool:
    row = tx.one("count_label", label_key=params["label_key"], label_value=params["label_value"],
                 most=FEW)  # fmt: skip
    return row is not None and int(row["n"]) < FEW
