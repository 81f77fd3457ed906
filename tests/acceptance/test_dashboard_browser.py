"""The dashboard in a real headless Chromium, against real `corral serve` and `corral worker`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from acceptance_helpers import Cluster, Procs

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium driven by Playwright (never a browser Playwright downloads)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        yield exc
        return
    if not Path(CHROMIUM).exists():
        yield FileNotFoundError(f"{CHROMIUM} is missing: apt-get install -y chromium")
        return
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def _dash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    keeper = Procs()
    try:
        yield Cluster(keeper, tmp_path_factory.mktemp("dash"), "dash").start(
            local_slots=0, lease_ttl="10s"
        )
    finally:
        keeper.close()


@pytest.fixture
def dash(_dash_server: Cluster, procs: Procs, tmp_path: Path) -> Cluster:
    return _dash_server.borrow(procs, tmp_path)


@pytest.fixture
def browser(chromium: Any, missing_service: Callable[[str, str], NoReturn]) -> Any:
    if isinstance(chromium, BaseException):
        missing_service("chromium", str(chromium))
    return chromium


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: $CORRAL_SCREENSHOTS, or the test's own directory."""
    where = Path(os.environ.get("CORRAL_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def open_page(browser: Any, dash: Cluster, token: str | None = None) -> Any:
    """A fresh browser context, logged in with `token` (the admin's by default)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{dash.url}/runs")
    assert page.url.startswith(f"{dash.url}/login")
    page.fill("#token", token or dash.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{dash.url}/runs")
    return page


def new_token(dash: Cluster, kind: str, project: str) -> str:
    answer = dash.http().post("/api/v1/tokens", json={"kind": kind, "project": project})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def test_a_person_follows_a_live_log_cancels_and_reruns(
    dash: Cluster, browser: Any, shots: Path
) -> None:
    dash.worker("dash-w1", {"dash": "1"}, slots=2)
    page = open_page(browser, dash)
    page.screenshot(path=str(shots / "runs-empty.png"))
    slow = "for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 0.4; done; echo done >&2"
    run = dash.submit(
        {
            "name": "live",
            "jobs": {
                "prepare": {"command": "echo ready", "on": {"dash": "1"}},
                "count": {"command": slow, "needs": ["prepare"], "on": {"dash": "1"}},
            },
        }
    )
    page.goto(f"{dash.url}/runs/{run['id']}/jobs/count")
    page.evaluate("window.__notReloaded = true")
    page.locator("#log").get_by_text("tick-1", exact=True).wait_for()
    page.locator("#log").get_by_text("tick-8", exact=True).wait_for()
    page.locator("#log .s-stderr").get_by_text("done").wait_for()
    page.locator("#job-live h1 .badge.st-passed").wait_for()
    assert page.evaluate("window.__notReloaded") is True  # it all came without a reload
    page.screenshot(path=str(shots / "job.png"), full_page=True)

    long = dash.submit(
        {"name": "long", "jobs": {"sleepy": {"command": "sleep 60", "on": {"dash": "1"}}}}
    )
    dash.wait_job(long["id"], "sleepy", ("running",))
    page.goto(f"{dash.url}/runs/{long['id']}")
    page.locator("#run-live h1 .badge.st-running").wait_for()
    page.screenshot(path=str(shots / "run-live.png"), full_page=True)
    page.click("text=Cancel run")
    page.locator("h1 .badge.st-canceled").wait_for()
    assert dash.run(long["id"])["state"] == "canceled"
    page.click("text=Rerun all")
    page.locator("h1 .badge.st-running, h1 .badge.st-queued").first.wait_for()
    dash.wait_job(long["id"], "sleepy", ("running",))
    page.locator("h1 .badge.st-running").wait_for()  # the page follows the rerun by itself

    page.goto(f"{dash.url}/workers")
    page.locator(f"#workers-live a[href='/runs/{long['id']}/jobs/sleepy']").wait_for()
    page.screenshot(path=str(shots / "workers.png"), full_page=True)
    page.click("#workers-live button:has-text('Drain')")
    page.locator("#workers-live .badge.st-draining").wait_for()
    page.click("#workers-live button:has-text('Resume')")
    page.locator("#workers-live .badge.st-online").wait_for()

    page.goto(f"{dash.url}/runs/{long['id']}")
    page.click("text=Cancel run")
    page.locator("h1 .badge.st-canceled").wait_for()
    page.goto(f"{dash.url}/runs")
    page.locator(f"a[href='/runs/{long['id']}']").wait_for()
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    page.context.close()


def test_the_matrix_shows_three_runs(dash: Cluster, browser: Any, shots: Path) -> None:
    dash.worker("dash-w2", {"dash": "2"}, slots=2)
    ids = []
    for rev in ("a1f3", "b7c2", "c9d0"):
        fail = "exit 1" if rev == "b7c2" else "true"
        run = dash.submit(
            {
                "name": "nightly",
                "params": {"rev": rev},
                "jobs": {
                    "build": {"command": "sleep 0.2", "on": {"dash": "2"}},
                    "test": {"command": fail, "needs": ["build"], "on": {"dash": "2"}},
                    "package": {"command": "true", "needs": ["test"], "on": {"dash": "2"}},
                },
            }
        )
        ids.append(run["id"])
    for rid in ids:
        dash.wait_run(rid)
    page = open_page(browser, dash)
    page.goto(f"{dash.url}/matrix?name=nightly")
    rows = page.locator("table.matrix tbody tr")
    assert rows.count() == 3
    assert page.locator("td.cell.st-failed").count() == 1
    assert page.locator("td.cell.st-skipped").count() == 1
    page.screenshot(path=str(shots / "matrix.png"), full_page=True)
    page.goto(f"{dash.url}/runs/{ids[1]}")
    page.locator("h1 .badge.st-failed").wait_for()
    page.screenshot(path=str(shots / "run.png"), full_page=True)
    page.goto(f"{dash.url}/matrix?name=nightly")
    page.click(f"a[href='/runs/{ids[1]}/jobs/test']")
    page.wait_for_url(f"{dash.url}/runs/{ids[1]}/jobs/test")
    page.locator("#job-live .badge.st-failed").first.wait_for()
    page.context.close()


def test_a_reader_cannot_see_another_project_or_cancel(dash: Cluster, browser: Any) -> None:
    run = dash.submit({"name": "guarded", "jobs": {"wait": {"command": "sleep 60"}}})
    outsider = open_page(browser, dash, new_token(dash, "reader", "elsewhere"))
    answer = outsider.goto(f"{dash.url}/runs/{run['id']}")
    assert answer is not None and answer.status == 404
    assert "guarded" not in outsider.content()
    outsider.goto(f"{dash.url}/runs")
    assert "guarded" not in outsider.content()
    outsider.context.close()

    reader = open_page(browser, dash, new_token(dash, "reader", "default"))
    reader.goto(f"{dash.url}/runs/{run['id']}")
    reader.get_by_text("guarded").first.wait_for()
    assert reader.locator("text=Cancel run").count() == 0
    assert reader.get_by_text("read-only").count() == 1
    reader.context.close()
    dash.http().post(f"/api/v1/runs/{run['id']}/cancel")


def test_a_log_with_a_script_tag_stays_text(dash: Cluster, browser: Any) -> None:
    dash.worker("dash-w3", {"dash": "3"})
    command = "printf '<script>alert(1)</script>\\n\\033[1;32mgreen\\033[0m <b>bold?</b>\\n'"
    run = dash.submit(
        {"name": "evil", "jobs": {"print": {"command": command, "on": {"dash": "3"}}}}
    )
    dash.wait_run(run["id"])
    page = open_page(browser, dash)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{dash.url}/runs/{run['id']}/jobs/print")
    page.locator("#log").get_by_text("<script>alert(1)</script>").wait_for()
    assert page.locator("#log script").count() == 0 and page.locator("#log b").count() == 0
    green = page.locator("#log span.c-green")
    assert green.inner_text() == "green"
    assert "rgb(63, 185, 80)" in green.evaluate("e => getComputedStyle(e).color")
    page.wait_for_timeout(500)
    assert dialogs == []
    page.context.close()


def test_chromium_is_debians(browser: Any) -> None:
    """The tests must not fetch a browser of their own: the one they drive is /usr/bin's."""
    assert shutil.which("chromium") == CHROMIUM
    assert browser.version
