"""The dashboard: pages are shells, and their live parts are HTML fragments under ``/ui`` that
the page fetches with the signed-in token (so they follow the API's read rules) and refreshes.
Actions call the JSON API itself, so they follow exactly its permission rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .._engine import Engine
from .._errors import RunNotFound
from .._shape import waits_of as _waits_of
from .._state import Event, State, Status
from ._auth import Authenticator, Identity
from ._diagram import diagram, progress
from ._html import badge, fmt_duration, fmt_time, h, layout, pretty_json
from ._json import query_limit, query_status
from ._schedules import Schedules

#: The timeline shows the latest events of a long history only (the API has all of them).
MAX_EVENTS = 500

_KIND_LABEL = {
    "created": "created",
    "run_started": "started",
    "step_completed": "step completed",
    "step_failed": "step failed",
    "branch_taken": "branch taken",
    "loop_iteration": "loop iteration",
    "loop_ended": "loop ended",
    "parallel_completed": "parallel completed",
    "waiting": "waiting",
    "signal_received": "signal received",
    "signal_consumed": "signal consumed",
    "approval_received": "decision received",
    "timer_fired": "timer fired",
    "child_started": "child started",
    "child_completed": "child completed",
    "compensating": "compensating",
    "compensated": "compensated",
    "compensation_failed": "compensation failed",
    "compensation_retry": "compensation retry",
    "paused": "paused",
    "pause_requested": "pause requested",
    "resumed": "resumed",
    "cancel_requested": "cancel requested",
    "run_completed": "completed",
    "run_failed": "failed",
    "run_cancelled": "cancelled",
}


def _run_link(run_id: str) -> str:
    return f'<a href="/runs/{h(quote(run_id, safe=""))}" class="mono">{h(run_id)}</a>'


def _ago(value: datetime, now: datetime) -> str:
    seconds = (now - value).total_seconds()
    if seconds >= 0:
        return f"{fmt_duration(seconds)} ago"
    return f"in {fmt_duration(-seconds)}"


def _short(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class Pages:
    """The dashboard's pages and fragments over one engine."""

    def __init__(self, engine: Engine, auth: Authenticator, schedules: Schedules) -> None:
        self.engine = engine
        self.auth = auth
        self.schedules = schedules

    def _page(self, title: str, active: str, body: str) -> HTMLResponse:
        return HTMLResponse(layout(title, active, body, open_mode=self.auth.open))

    # Shells ----------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """GET /: the runs page."""
        return RedirectResponse("/runs", status_code=307)

    async def runs_page(self, request: Request) -> Response:
        """GET /runs: runs with filters, refreshed live."""
        params = request.query_params
        options = "".join(
            f'<option value="{s.value}"{" selected" if params.get("status") == s.value else ""}>'
            f"{s.value}</option>"
            for s in Status
        )
        query = urlencode({k: v for k, v in params.items() if v})
        body = f"""
<h1>Runs</h1>
<form class="filters" method="get" action="/runs">
  <label>Search id <input name="q" value="{h(params.get("q"))}" placeholder="run id"></label>
  <label>Workflow <input name="workflow" list="wf-names" value="{h(params.get("workflow"))}"
    placeholder="any"></label>
  <label>Status <select name="status"><option value="">any</option>{options}</select></label>
  <button type="submit">Filter</button>
  <label class="live-toggle"><input type="checkbox" id="live-toggle" checked> live</label>
</form>
<div id="live" data-src="/ui/runs?{h(query)}" data-every="2000">Loading…</div>"""
        return self._page("Runs", "runs", body)

    async def run_page(self, request: Request) -> Response:
        """GET /runs/{run_id}: one run, refreshed live until it has finished."""
        run_id = request.path_params["run_id"]
        src = f"/ui/runs/{quote(run_id, safe='')}"
        body = (
            f'<p class="crumbs"><a href="/runs">Runs</a> / <span class="mono">{h(run_id)}</span>'
            f'</p><div id="live" data-src="{h(src)}" data-every="1500">Loading…</div>'
        )
        return self._page(f"Run {run_id}", "runs", body)

    async def schedules_page(self, request: Request) -> Response:
        """GET /schedules: schedules with their next fire times."""
        body = (
            '<h1>Schedules</h1><div id="live" data-src="/ui/schedules" data-every="5000">'
            "Loading…</div>"
        )
        return self._page("Schedules", "schedules", body)

    # Fragments -------------------------------------------------------------------------------

    async def runs_fragment(self, request: Request) -> Response:
        """GET /ui/runs: the runs table."""
        self.auth.require(request, write=False)
        params = request.query_params
        q = (params.get("q") or "").strip()
        runs = await self.engine.runs(
            workflow=params.get("workflow") or None,
            status=query_status(request),
            limit=query_limit(request, default=200) if not q else 1000,
        )
        if q:
            runs = [r for r in runs if q in r.id]
            if not runs:
                try:
                    runs = [await self.engine.status(q)]
                except RunNotFound:
                    runs = []
        now = datetime.now(UTC)
        rows = "".join(self._run_row(state, now) for state in runs)
        names = "".join(f'<option value="{h(n)}">' for n in sorted(self.engine.workflows))
        if not rows:
            rows = '<tr><td colspan="6" class="muted">No runs match.</td></tr>'
        return HTMLResponse(
            f'<datalist id="wf-names">{names}</datalist>'
            f'<table class="runs"><thead><tr><th>Run</th><th>Workflow</th><th>Status</th>'
            f"<th>Waiting for</th><th>Created</th><th>Updated</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f'<p class="muted small">{len(runs)} run(s) · refreshed {now:%H:%M:%S} UTC</p>'
        )

    def _run_row(self, state: State, now: datetime) -> str:
        waits = ", ".join(state.waiting_for) or (state.error or "")
        return (
            f'<tr class="run-row" data-run="{h(state.id)}"><td>{_run_link(state.id)}</td>'
            f"<td>{h(state.workflow)}</td><td>{badge(state.status.value)}</td>"
            f'<td class="small">{h(waits[:120])}</td>'
            f'<td class="small">{fmt_time(state.created_at)}</td>'
            f'<td class="small" title="{h(state.updated_at.isoformat())}">'
            f"{_ago(state.updated_at, now)}</td></tr>"
        )

    async def run_fragment(self, request: Request) -> Response:
        """GET /ui/runs/{run_id}: status, why it waits, actions, diagram, data, timeline."""
        identity = self.auth.require(request, write=False)
        run_id = request.path_params["run_id"]
        state = await self.engine.status(run_id)
        events = await self.engine.history(run_id)
        shape = await self.engine.definition(run_id)
        children = await self.engine.runs(parent_id=run_id, limit=100)
        finished = state.status.finished
        started = events[0].at if events else state.created_at
        ended = events[-1].at if finished and events else None
        took = f" · took {fmt_duration((ended - started).total_seconds())}" if ended else ""
        parent = f"<div>Parent run: {_run_link(state.parent_id)}</div>" if state.parent_id else ""
        head = f"""
<section class="card run-head" data-finished="{"1" if finished else "0"}">
  <h1><span class="mono">{h(state.id)}</span> {badge(state.status.value)}</h1>
  <div class="meta">workflow <b>{h(state.workflow)}</b> · created {fmt_time(state.created_at)}
    · updated {fmt_time(state.updated_at)}{took}</div>{parent}
  {self._why(state, events, shape)}
</section>"""
        kids = ""
        if children:
            rows = "".join(
                f"<li>{_run_link(c.id)} {h(c.workflow)} {badge(c.status.value)}</li>"
                for c in children
            )
            kids = f'<section class="card"><h2>Child runs</h2><ul>{rows}</ul></section>'
        body = (
            head
            + self._actions(state, shape, identity)
            + '<div class="grid">'
            + f'<section class="card"><h2>Workflow</h2>{diagram(shape, progress(state, events))}'
            + "</section>"
            + f'<section class="card"><h2>Data</h2><pre class="data">{pretty_json(state.data)}'
            + "</pre></section></div>"
            + kids
            + f'<section class="card"><h2>History</h2>{self._timeline(events)}</section>'
        )
        return HTMLResponse(body)

    def _why(self, state: State, events: list[Event], shape: dict[str, Any]) -> str:
        if state.status is Status.FAILED:
            return f'<div class="why error"><b>Failed:</b> {h(state.error)}</div>'
        if state.status is Status.CANCELLED:
            extra = f": {h(state.error)}" if state.error else ""
            return f'<div class="why">Cancelled{extra}</div>'
        if state.status is Status.PAUSED:
            return '<div class="why">Paused: resume it to go on where it stopped.</div>'
        if state.status is not Status.WAITING:
            return ""
        _, approvals = _waits_of(shape)
        until = None
        for event in reversed(events):
            if event.kind == "waiting":
                until = event.detail.get("until")
                break
        reasons = []
        for wait in state.waiting_for:
            kind, _, name = wait.partition(":")
            if kind == "signal":
                reasons.append(f"the signal <b>{h(name)}</b>")
            elif kind == "approval":
                spec = approvals.get(name, {})
                who = ", ".join(spec.get("approvers") or []) or "anyone"
                quorum = spec.get("quorum") or 1
                need = f" ({quorum} of them)" if quorum > 1 else ""
                reasons.append(f"approval <b>{h(name)}</b> by {h(who)}{need}")
            elif kind == "timer":
                reasons.append(f"the timer <b>{h(name)}</b>")
            elif kind == "retry":
                reasons.append(f"the next attempt of step <b>{h(name)}</b>")
            elif kind == "run":
                reasons.append(f"the child run {_run_link(name)}")
            else:
                reasons.append(h(wait))
        text = " and ".join(reasons) or "something"
        when = f" (until {h(until)})" if until else ""
        return f'<div class="why waiting">Waiting for {text}{when}.</div>'

    def _actions(self, state: State, shape: dict[str, Any], identity: Identity) -> str:
        if state.status.finished:
            return ""
        disabled = "" if identity.can_write else " disabled"
        note = (
            ""
            if identity.can_write
            else '<p class="muted">Your token is read-only: actions are disabled.</p>'
        )
        signals, approvals = _waits_of(shape)
        base = f"/api/runs/{quote(state.id, safe='')}"
        parts = []
        waiting = [w.split(":", 1)[1] for w in state.waiting_for if w.startswith("approval:")]
        for name in waiting:
            spec = approvals.get(name, {})
            who = ", ".join(spec.get("approvers") or []) or "anyone"
            n = quote(name, safe="")
            cid = f"comment-{h(name)}"
            parts.append(f"""
<div class="action approval" data-approval="{h(name)}">
  <div><b>Approval {h(name)}</b> <span class="muted">(approvers: {h(who)}; you decide as
    <b>{h(identity.name or "anonymous")}</b>)</span></div>
  <input id="{cid}" placeholder="comment / reason (optional)">
  <button class="act ok" data-url="{base}/approve/{n}" data-fields="comment={cid}"
    {disabled}>Approve</button>
  <button class="act danger" data-url="{base}/reject/{n}" data-fields="reason={cid}"
    data-confirm="Reject approval {h(name)}?"{disabled}>Reject</button>
</div>""")
        if signals:
            options = "".join(f'<option value="{h(s)}">{h(s)}</option>' for s in sorted(signals))
            parts.append(f"""
<div class="action signal">
  <div><b>Send a signal</b></div>
  <select id="signal-name">{options}</select>
  <textarea id="signal-data" rows="2" placeholder='JSON data, e.g. {{"amount": 10}}'></textarea>
  <button class="act" data-url="{base}/signal/{{signal-name}}" data-json="data=signal-data"
    {disabled}>Send signal</button>
</div>""")
        verb = "resume" if state.status is Status.PAUSED else "pause"
        controls = [
            f'<button class="act" data-url="{base}/{verb}"{disabled}>{verb.capitalize()}</button>'
        ]
        controls.append(
            f'<button class="act danger" data-url="{base}/cancel" '
            f'data-confirm="Cancel this run? Completed steps are compensated."{disabled}>'
            "Cancel</button>"
        )
        parts.append(f'<div class="action controls">{"".join(controls)}</div>')
        return f'<section class="card actions"><h2>Actions</h2>{note}{"".join(parts)}</section>'

    def _timeline(self, events: list[Event]) -> str:
        if not events:
            return '<p class="muted">No history.</p>'
        start = events[0].at
        rows = []
        skipped = max(0, len(events) - MAX_EVENTS)
        if skipped:
            rows.append(f'<li class="ev muted">… {skipped} earlier events (see the API)</li>')
        for i, event in enumerate(events):
            if i < skipped:
                continue
            detail = dict(event.detail)
            cls = "ev"
            took = ""
            if "ms" in detail:
                took = fmt_duration(float(detail.pop("ms")) / 1000)
            elif event.kind == "waiting" and i + 1 < len(events):
                took = "waited " + fmt_duration((events[i + 1].at - event.at).total_seconds())
            if event.kind in ("step_failed", "run_failed", "compensation_failed"):
                cls += (
                    " ev-error"
                    if detail.get("final") or event.kind != "step_failed"
                    else (" ev-warn")
                )
            elif event.kind in ("run_completed", "step_completed"):
                cls += " ev-ok"
            error = detail.pop("error", None)
            detail.pop("final", None)
            info = ", ".join(f"{k}: {_short(v)}" for k, v in detail.items() if v is not None)
            rows.append(
                f'<li class="{cls}" data-kind="{h(event.kind)}">'
                f'<span class="t">+{h(fmt_duration((event.at - start).total_seconds()))}</span>'
                f'<span class="k">{h(_KIND_LABEL.get(event.kind, event.kind))}</span>'
                f'<span class="s">{h(event.step or "")}</span>'
                f'<span class="d">{h(took)}</span>'
                f'<span class="i">{h(info[:300])}</span>'
                + f'<span class="at">{fmt_time(event.at)}</span>'
                + (f'<div class="err">{h(error)}</div>' if error else "")
                + "</li>"
            )
        return f'<ol class="timeline">{"".join(rows)}</ol>'

    async def schedules_fragment(self, request: Request) -> Response:
        """GET /ui/schedules: schedules, their next fire times, and enable/disable."""
        identity = self.auth.require(request, write=False)
        disabled = "" if identity.can_write else " disabled"
        now = datetime.now(UTC)
        rows = []
        for s in await self.schedules.all(previews=3):
            sid = quote(s["id"], safe="")
            base = f"/api/schedules/{sid}"
            fires = (
                "".join(
                    f"<li>{fmt_time(datetime.fromisoformat(t))} "
                    f'<span class="muted">({_ago(datetime.fromisoformat(t), now)})</span></li>'
                    for t in s["next_fires"]
                )
                or '<li class="muted">— (disabled)</li>'
            )
            toggle = (
                f'<button class="act" data-url="{base}/disable"{disabled}>Disable</button>'
                if s["enabled"]
                else f'<button class="act ok" data-url="{base}/enable"{disabled}>Enable</button>'
            )
            state = "enabled" if s["enabled"] else "disabled"
            inputs = (
                '<span class="muted">—</span>'
                if s["input"] is None
                else f'<code class="small">{h(json.dumps(s["input"], ensure_ascii=False))}</code>'
            )
            last = datetime.fromisoformat(s["last_run"]) if s["last_run"] else None
            rows.append(
                f'<tr data-schedule="{h(s["id"])}"><td class="mono nowrap">{h(s["id"])}</td>'
                f"<td>{h(s['workflow'])}</td><td><code>{h(s['expression'])}</code>"
                f'<div class="muted small">{h(s["timezone"])}</div></td>'
                f'<td><span class="badge sched-{state}">{state}</span></td>'
                f'<td><ul class="fires">{fires}</ul></td><td class="small">{fmt_time(last)}</td>'
                f"<td>{inputs}</td>"
                f'<td class="nowrap">{toggle} <button class="act danger" data-method="DELETE" '
                f'data-url="{base}" data-confirm="Delete schedule {h(s["id"])}?"{disabled}>'
                "Delete</button></td></tr>"
            )
        table = "".join(rows) or '<tr><td colspan="8" class="muted">No schedules.</td></tr>'
        names = "".join(f'<option value="{h(n)}">' for n in sorted(self.engine.workflows))
        form = f"""
<section class="card"><h2>Add a schedule</h2>
<div class="action add-schedule"><datalist id="wf-names">{names}</datalist>
  <label>Id <input id="new-id" placeholder="nightly-report"></label>
  <label>Workflow <input id="new-workflow" list="wf-names" placeholder="workflow"></label>
  <label>When <input id="new-expression" placeholder="0 2 * * * · @daily · @every 1h"></label>
  <label>Time zone <input id="new-timezone" placeholder="UTC"></label>
  <label>Input (JSON) <input id="new-input" placeholder='{{"format": "pdf"}}'></label>
  <button class="act ok" data-url="/api/schedules" data-json="input=new-input"
    data-fields="id=new-id,workflow=new-workflow,expression=new-expression,timezone=new-timezone"
    {disabled}>Add</button></div></section>"""
        return HTMLResponse(
            '<table class="schedules"><thead><tr><th>Id</th><th>Workflow</th><th>When</th>'
            "<th>State</th><th>Next fires</th><th>Last run</th><th>Input</th><th></th></tr>"
            f"</thead><tbody>{table}</tbody></table>{form}"
        )

    def routes(self) -> list[Route]:
        """Every route of the dashboard."""
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/runs", self.runs_page, methods=["GET"]),
            Route("/runs/{run_id}", self.run_page, methods=["GET"]),
            Route("/schedules", self.schedules_page, methods=["GET"]),
            Route("/ui/runs", self.runs_fragment, methods=["GET"]),
            Route("/ui/runs/{run_id}", self.run_fragment, methods=["GET"]),
            Route("/ui/schedules", self.schedules_fragment, methods=["GET"]),
        ]
