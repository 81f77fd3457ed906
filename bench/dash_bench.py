"""Dashboard: runs page and job page server time with many jobs stored, and log-line latency.

A fresh ``corral serve --local-slots 2`` per repetition. The store is filled through
corral's own API with ``--dash-jobs`` jobs in ``--dash-runs`` runs: each run's jobs
ask for a label no worker has (``on = {bench = "fill"}``), and each run is canceled
right after its submit, so the store holds that many ended jobs and the workers
stay idle. Then:

* runs page / job page: ``GET /runs`` and ``GET /runs/{id}/jobs/{label}`` (a real job
  with a 200-line log), logged in through the login form, timed ``--dash-requests``
  times each from request to the whole answer over loopback (p50/p99);
* log line → browser: headless Chromium (Debian's ``/usr/bin/chromium``, driven by
  Playwright) logs in through the form with the admin token and opens a job's page;
  the job then prints ``--dash-lines`` lines 100 ms apart, each holding the time it
  was written; a MutationObserver in the page notes when each line appears. The
  figure is appearance - written (both the same machine's wall clock), p50/p99.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx

from bench.systems.corral_sys import CorralSystem
from bench.workloads import percentile

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOG_JOB_LINES = 200

_OBSERVER = """
() => {
  window.__marks = [];
  const log = document.getElementById("log");
  new MutationObserver(() => {
    const now = Date.now();
    for (const el of log.querySelectorAll(".ln:not([data-seen])")) {
      el.setAttribute("data-seen", "1");
      window.__marks.push([el.textContent, now]);
    }
  }).observe(log, {childList: true, subtree: true});
}
"""


def login(base: str, token: str) -> httpx.Client:
    """An HTTP session logged in through the dashboard's form, as a browser would."""
    http = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    page = http.get("/login")
    page.raise_for_status()
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if not found:
        raise RuntimeError("dashboard: no csrf field in the login form")
    answer = http.post("/login", data={"csrf": found.group(1), "next": "/runs", "token": token})
    if answer.status_code not in (302, 303):
        raise RuntimeError(f"dashboard login answered {answer.status_code}")
    return http


def fill(system: CorralSystem, jobs: int, runs: int, log=print) -> None:
    """``jobs`` jobs in ``runs`` runs, submitted and canceled through the API."""
    client = system.client
    assert client is not None
    per = max(1, jobs // runs)
    left = jobs
    t0 = time.perf_counter()
    k = 0
    while left > 0:
        n = min(per, left)
        spec = {
            "name": f"fill-{k}",
            "jobs": {f"j{i}": {"command": "true", "on": {"bench": "fill"}} for i in range(n)},
        }
        run = client.submit(spec)
        client.cancel(run["id"])
        left -= n
        k += 1
    log(f"  dashboard: {jobs:,} jobs in {k:,} runs stored in {time.perf_counter() - t0:.1f} s")


def time_gets(http: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.get(path)
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"GET {path} answered {r.status_code}")
        out.append(ms)
    return out


def log_latency(system: CorralSystem, lines: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    client = system.client
    assert client is not None
    script = (
        "import time\n"
        "time.sleep(4)\n"
        f"for i in range({lines}):\n"
        "    print(f'mark {i} {time.time():.6f}', flush=True)\n"
        "    time.sleep(0.1)\n"
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{system.base}/login")
            page.fill("#token", system.token)
            page.click("button[type=submit]")
            page.wait_for_url("**/runs**")
            run = client.submit(
                {"name": "live-log", "jobs": {"talk": {"command": ["python3", "-c", script]}}}
            )
            page.goto(f"{system.base}/runs/{run['id']}/jobs/talk")
            page.wait_for_selector("#log", state="attached")
            page.evaluate(_OBSERVER)
            deadline = time.monotonic() + 60 + lines * 0.5
            marks: list = []
            while time.monotonic() < deadline:
                marks = page.evaluate("window.__marks")
                if len(marks) >= lines:
                    break
                time.sleep(0.2)
            final = client.wait(run["id"], timeout=60)
            if final["state"] != "passed":
                raise RuntimeError(f"live-log run ended {final['state']}")
        finally:
            browser.close()
    lat = []
    for text, seen_ms in marks:
        parts = text.split()
        if len(parts) == 3 and parts[0] == "mark":
            lat.append(seen_ms - float(parts[2]) * 1000)
    if len(lat) < lines:
        raise RuntimeError(f"dashboard: {len(lat)} of {lines} log lines reached the browser")
    return lat


def measure(
    workdir: Path, jobs: int, runs: int, requests: int, lines: int, log=print
) -> dict[str, dict[str, float]]:
    system = CorralSystem(workdir)
    try:
        system.start()
        assert system.client is not None
        fill(system, jobs, runs, log)
        out = f"seq 1 {LOG_JOB_LINES} | sed 's/^/line /'"
        run = system.client.submit(
            {"name": "with-log", "jobs": {"out": {"command": ["sh", "-c", out]}}}
        )
        if system.client.wait(run["id"], timeout=60)["state"] != "passed":
            raise RuntimeError("dashboard: the job with a log did not pass")
        http = login(system.base, system.token)
        try:
            runs_ms = time_gets(http, "/runs", requests)
            job_ms = time_gets(http, f"/runs/{run['id']}/jobs/out", requests)
        finally:
            http.close()
        lat = log_latency(system, lines)
    finally:
        system.stop()
        shutil.rmtree(system.home, ignore_errors=True)
    vals = {
        "dash_runs_p50_ms": percentile(runs_ms, 50),
        "dash_runs_p99_ms": percentile(runs_ms, 99),
        "dash_job_p50_ms": percentile(job_ms, 50),
        "dash_job_p99_ms": percentile(job_ms, 99),
        "dash_log_p50_ms": percentile(lat, 50),
        "dash_log_p99_ms": percentile(lat, 99),
    }
    log("  dashboard: " + ", ".join(f"{k}={v:,.1f}" for k, v in vals.items()))
    return {"dash:corral": vals}
