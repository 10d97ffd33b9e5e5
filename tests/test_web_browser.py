"""The dashboard end to end in a real headless browser (Debian's chromium, driven by Playwright):
a run waits for approval, the test signs in, clicks Approve, and the page shows it completed.
Screenshots of the main pages go to $TREADLE_SCREENSHOTS (docs/screenshots to refresh the docs)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

import treadle
from treadle.web import Identity, create_app

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("TREADLE_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM}", allow_module_level=True)

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Set TREADLE_SCREENSHOTS=docs/screenshots to refresh the pictures in the docs; by default they go
# to a temporary folder, so that a test run leaves the work tree as it was.
SCREENSHOTS = Path(
    os.environ.get("TREADLE_SCREENSHOTS") or tempfile.mkdtemp(prefix="treadle-screenshots-")
)
TOKENS = {"tok-alice": Identity("alice", True), "tok-viewer": Identity("viewer", False)}
T = TypeVar("T")


def _reserve(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["reserved"] = [f"item-{i}" for i in state.data.get("items", [])]


def _check(ctx: treadle.Context, state: treadle.State) -> str:
    return "ok"


def _pay(ctx: treadle.Context, state: treadle.State) -> dict[str, Any]:
    return {"charged": state.data.get("total", 0)}


def _notify(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["notified"] = True


def _decline(ctx: treadle.Context, state: treadle.State) -> None:
    raise treadle.NonRetryableError("card declined by the bank")


def _release(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["released"] = True


ORDER = (
    treadle.new("order")
    .step("reserve", _reserve, compensate=_release)
    .if_("large", lambda s: s.data.get("total", 0) > 1000)
    .then(treadle.step("fraud-check", _check))
    .else_(treadle.step("auto-ok", _check))
    .end()
    .await_approval("manager", ["alice", "bob"])
    .parallel("notify", treadle.step("email", _notify), treadle.step("sms", _notify))
    .step("pay", _pay)
    .build()
)
REFUND = (
    treadle.new("refund")
    .step("reserve-refund", _reserve, compensate=_release)
    .step("charge-back", _decline)
    .build()
)
SHIPPING = (
    treadle.new("shipping")
    .loop("pack")
    .for_each("items")
    .do(treadle.step("pack-item", _check))
    .end()
    .await_signal("picked-up")
    .step("close", _check)
    .build()
)


@dataclass
class Served:
    """The app served by uvicorn in a thread, with the engine on that thread's loop."""

    url: str
    loop: asyncio.AbstractEventLoop
    engine: treadle.Engine
    runs: dict[str, str] = field(default_factory=dict)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


async def _seed(engine: treadle.Engine, cron: Any) -> dict[str, str]:
    runs = {
        "approval": await engine.start(
            "order", {"total": 1250, "items": [1, 2]}, run_id="ord-1001"
        ),
        "small": await engine.start("order", {"total": 40, "items": [3]}, run_id="ord-1002"),
        "failed": await engine.start("refund", {"items": [7]}, run_id="ref-77"),
        "shipping": await engine.start("shipping", {"items": ["a", "b", "c"]}, run_id="ship-9"),
        "paused": await engine.start("shipping", {"items": ["d"]}, run_id="ship-10"),
    }
    await engine.wait(runs["failed"], timeout=10)
    for _ in range(500):
        states = [await engine.status(r) for r in runs.values()]
        if all(s.status in (treadle.Status.WAITING, treadle.Status.FAILED) for s in states):
            break
        await asyncio.sleep(0.01)
    await engine.pause(runs["paused"])
    await engine.approve(runs["small"], "manager", by="bob", comment="small order")
    await engine.wait(runs["small"], timeout=10)
    await cron.add("nightly-report", "shipping", "0 2 * * *", {"items": []})
    await cron.add(
        "hourly-sync", "order", "@every 1h", {"total": 1, "items": []}, timezone="Europe/Berlin"
    )
    await cron.add("weekly-audit", "refund", "30 9 * * mon", None)
    await cron.disable("weekly-audit")
    return runs


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
        for workflow in (ORDER, REFUND, SHIPPING):
            engine.register(workflow)
        async with engine:
            cron = treadle.Cron(engine)
            box["runs"] = await _seed(engine, cron)
            app = create_app(engine, tokens=TOKENS, cron=cron)
            config = uvicorn.Config(app, log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            box["engine"], box["server"] = engine, server
            task = asyncio.create_task(server.serve(sockets=[sock]))
            for _ in range(3000):  # up to 30 s
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            ready.set()
            await task

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the test below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, name="treadle-web-test", daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield Served(f"http://127.0.0.1:{port}", loop, box["engine"], box["runs"])
    finally:
        box["server"].should_exit = True
        thread.join(15)
        with contextlib.suppress(Exception):
            sock.close()
        loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1320, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


def _sign_in(page: Any, token: str, who: str) -> None:
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    playwright_sync.expect(page.locator("#who")).to_have_text(who)


def test_approve_in_the_page_completes_the_run(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    run_id = served.runs["approval"]
    page.goto(f"{served.url}/runs")
    expect(page.locator("#live")).to_contain_text("sign in")
    _sign_in(page, "tok-alice", "alice · read-write")
    row = page.locator(f'tr[data-run="{run_id}"]')
    expect(row.locator(".badge")).to_have_text("waiting")
    expect(page.locator('tr[data-run="ref-77"] .badge')).to_have_text("failed")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "runs.png"), full_page=True)

    row.locator("a").click()
    expect(page.locator(".run-head .badge")).to_have_text("waiting")
    expect(page.locator(".why")).to_contain_text("approval manager by alice, bob")
    expect(page.locator('.d-node[data-step="manager"]')).to_have_attribute("data-state", "current")
    expect(page.locator('.d-node[data-step="fraud-check"]')).to_have_attribute("data-state", "done")
    expect(page.locator('.d-node[data-step="auto-ok"]')).to_have_attribute("data-state", "pending")
    page.screenshot(path=str(SCREENSHOTS / "run-waiting.png"), full_page=True)

    page.fill("#comment-manager", "looks right")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".run-head .badge")).to_have_text("completed")
    expect(page.locator(".timeline")).to_contain_text("completed")
    expect(page.locator('.d-node[data-step="pay"]')).to_have_attribute("data-state", "done")
    page.screenshot(path=str(SCREENSHOTS / "run-completed.png"), full_page=True)

    state = served.call(served.engine.status(run_id))
    assert state.status is treadle.Status.COMPLETED
    assert state.data["manager"] == {"approved": True, "by": ["alice"], "comment": "looks right"}


def test_run_page_shows_failure_and_timeline(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/runs/ref-77")
    _sign_in(page, "tok-viewer", "viewer · read-only")
    expect(page.locator(".why.error")).to_contain_text("card declined by the bank")
    expect(page.locator('.timeline li[data-kind="compensated"]')).to_contain_text("reserve-refund")
    expect(page.locator('.d-node[data-step="charge-back"]')).to_have_attribute(
        "data-state", "failed"
    )
    page.screenshot(path=str(SCREENSHOTS / "run-failed.png"), full_page=True)


def test_read_only_token_cannot_act(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/runs/ship-9")
    _sign_in(page, "tok-viewer", "viewer · read-only")
    expect(page.locator(".actions")).to_contain_text("read-only")
    expect(page.get_by_role("button", name="Send signal")).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()


def test_signal_and_resume_from_the_page(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/runs/ship-10")
    _sign_in(page, "tok-alice", "alice · read-write")
    expect(page.locator(".run-head .badge")).to_have_text("paused")
    page.fill("#signal-data", '{"by": "courier"}')
    page.get_by_role("button", name="Send signal").click()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".run-head .badge")).to_have_text("completed")
    state = served.call(served.engine.status("ship-10"))
    assert state.data["picked-up"] == {"by": "courier"}


def test_runs_filter_and_search(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/runs?status=failed")
    _sign_in(page, "tok-viewer", "viewer · read-only")
    expect(page.locator("tr.run-row")).to_have_count(1)
    page.goto(f"{served.url}/runs?q=ship-")
    expect(page.locator("tr.run-row")).to_have_count(2)


def test_schedules_page_shows_next_fires_and_toggles(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/schedules")
    _sign_in(page, "tok-alice", "alice · read-write")
    nightly = page.locator('tr[data-schedule="nightly-report"]')
    expect(nightly.locator(".fires li")).to_have_count(3)
    expect(nightly.locator(".fires")).to_contain_text("02:00:00 UTC")
    expect(page.locator('tr[data-schedule="weekly-audit"] .badge')).to_have_text("disabled")
    page.screenshot(path=str(SCREENSHOTS / "schedules.png"), full_page=True)
    nightly.get_by_role("button", name="Disable").click()
    expect(nightly.locator(".badge")).to_have_text("disabled")
    nightly.get_by_role("button", name="Enable").click()
    expect(nightly.locator(".badge")).to_have_text("enabled")


def test_add_a_schedule_from_the_page(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/schedules")
    _sign_in(page, "tok-alice", "alice · read-write")
    page.fill("#new-id", "monthly-close")
    page.fill("#new-workflow", "refund")
    page.fill("#new-expression", "0 6 1 * *")
    page.fill("#new-input", '{"items": [1]}')
    page.get_by_role("button", name="Add").click()
    row = page.locator('tr[data-schedule="monthly-close"]')
    expect(row.locator(".badge")).to_have_text("enabled")
    expect(row.locator(".fires")).to_contain_text("06:00:00 UTC")
    page.fill("#new-id", "bad")
    page.fill("#new-workflow", "refund")
    page.fill("#new-expression", "99 * * * *")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#toast")).to_contain_text("CronError")


def test_the_workflow_overview_shows_counts_chart_and_errors(served: Served, page: Any) -> None:
    expect = playwright_sync.expect
    page.goto(f"{served.url}/workflows")
    _sign_in(page, "tok-viewer", "viewer · read-only")
    page.get_by_role("link", name="refund", exact=True).click()
    overview = page.locator('.overview[data-workflow="refund"]')
    expect(overview.locator('[data-stat="failure-rate"]')).to_have_text("100.0%")
    expect(overview.locator("rect.bar.st-failed")).to_have_count(1)
    expect(overview.locator(".errors")).to_contain_text("card declined by the bank")
    expect(overview.locator('.steps tr[data-step="reserve-refund"]')).to_have_count(1)
    page.goto(f"{served.url}/workflows/order?range=24h")
    overview = page.locator('.overview[data-workflow="order"]')
    expect(overview.locator('[data-stat="runs"]')).to_have_text("2")
    expect(overview.locator("rect.bar.st-completed")).to_have_count(1)
    expect(overview.locator('a.active[data-range="24h"]')).to_have_count(1)
    page.screenshot(path=str(SCREENSHOTS / "workflow-overview.png"), full_page=True)


def test_runs_page_pages_filters_by_label_and_cancels_a_selection(
    served: Served, page: Any
) -> None:
    expect = playwright_sync.expect

    async def seed() -> list[str]:
        ids = []
        for n in range(1, 5):
            run_id = f"lab-{n}"
            labels = {"batch": "b7", "customer": f"c-{n % 2}"}
            ids.append(await served.engine.start("shipping", {"items": []}, run_id=run_id,
                                                 labels=labels))  # fmt: skip
            await served.engine.settle()
        return ids

    served.call(seed())
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{served.url}/runs?label=batch%3Db7&limit=3")
    _sign_in(page, "tok-alice", "alice · read-write")
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-run", "lab-4")
    expect(rows.first.locator(".labels")).to_contain_text("batch=b7")
    page.locator("a.page-next").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run", "lab-1")
    page.locator("a.page-prev").click()
    expect(rows).to_have_count(3)

    page.fill("input[name=label]", "batch=b7, customer=c-0")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    for run_id in ("lab-4", "lab-2"):
        page.locator(f'tr[data-run="{run_id}"] input.pick').check()
    expect(page.locator("#picked")).to_have_text("2 selected")
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.locator("#toast")).to_contain_text("cancel: 2 done, 0 skipped")
    for run_id in ("lab-4", "lab-2"):
        expect(page.locator(f'tr[data-run="{run_id}"] .badge')).to_have_text("cancelled")
    page.goto(f"{served.url}/runs?label=batch%3Db7")
    expect(page.locator('tr[data-run="lab-3"] .badge')).to_have_text("waiting")
    page.locator('tr[data-run="lab-3"] input.pick').check()
    page.screenshot(path=str(SCREENSHOTS / "runs-bulk.png"), full_page=True)
    history = served.call(served.engine.history("lab-4"))
    asked = [e for e in history if e.kind == "cancel_requested"]
    assert [e.detail for e in asked] == [{"by": "alice", "bulk": True}]
    assert served.call(served.engine.status("lab-1")).status is treadle.Status.WAITING


def test_a_paused_schedule_says_why_and_run_now_starts_a_run(served: Served, page: Any) -> None:
    # Last in this module: the failed run it makes would change the counts of the tests above.
    expect = playwright_sync.expect
    cron = treadle.Cron(served.engine)

    async def pause_after_a_failure() -> None:
        await cron.add(
            "daily-refunds", "refund", "0 5 * * *", {"items": [9]}, pause_on_failure=True
        )
        failed = await cron.trigger("daily-refunds", key="seed")
        await served.engine.wait(failed, timeout=10)
        await cron.tick()  # sees the failed run: pauses

    served.call(pause_after_a_failure())
    page.goto(f"{served.url}/schedules")
    _sign_in(page, "tok-alice", "alice · read-write")
    paused = page.locator('tr[data-schedule="daily-refunds"]')
    expect(paused.locator(".badge")).to_have_text("paused")
    expect(paused.locator(".paused-reason")).to_contain_text(
        "run cron:daily-refunds:trigger:seed failed"
    )
    page.screenshot(path=str(SCREENSHOTS / "schedules-paused.png"), full_page=True)
    nightly = page.locator('tr[data-schedule="nightly-report"]')
    nightly.get_by_role("button", name="Run now").click()
    expect(page.locator("#toast")).to_contain_text("Run now: done")
    runs = served.call(served.engine.runs(workflow="shipping", limit=100))
    assert any(r.id.startswith("cron:nightly-report:trigger:") for r in runs)
    paused.get_by_role("button", name="Enable").click()
    expect(paused.locator(".badge")).to_have_text("enabled")
    expect(paused.locator(".paused-reason")).to_have_count(0)
