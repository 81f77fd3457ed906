"""Run the workloads on corral, its peers and the floors; print and write the tables.

    bench/run.sh                     # everything, defaults below
    python -m bench --systems huey,floor --workloads W2 --reps 1   # from the repo root

Systems run one after the other within each repetition (A B C, A B C, ...),
each started fresh by the harness and stopped by its PIDs afterwards, also on
errors and Ctrl-C. A system that fails is reported with its error; the others
go on.
"""

from __future__ import annotations

import _thread
import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from bench import floors, procs, report, workloads
from bench.systems import ADAPTERS, load

ALL_SYSTEMS = ["corral", "huey", "celery", "rq", "procrastinate", "dask", "floor"]
QUEUE_WORKLOADS = ["W1", "W2", "W3"]  # run per system of --systems
#: workloads with their own participants (corral, its peers for that workload, floors)
EXTRA_WORKLOADS = ["W6", "W7", "W8", "DASH"]
ALL_WORKLOADS = QUEUE_WORKLOADS + EXTRA_WORKLOADS
LABELS = {"corral": "corral (task noop)"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workloads",
        default=",".join(QUEUE_WORKLOADS),
        help=f"comma-separated, of {','.join(ALL_WORKLOADS)}, or `all` (default %(default)s)",
    )
    ap.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help="comma-separated, in run order, of %(default)s",
    )
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default %(default)s)")
    ap.add_argument("--w1-n", type=int, default=5000, help="W1 task count (default %(default)s)")
    ap.add_argument("--w2-n", type=int, default=200, help="W2 task count (default %(default)s)")
    ap.add_argument("--w3-n", type=int, default=500, help="W3 task count (default %(default)s)")
    ap.add_argument(
        "--w3-mode",
        choices=["batch", "single"],
        default="batch",
        help="W3 through the batch API where one exists, or single calls",
    )
    ap.add_argument(
        "--corral-noop",
        choices=["task", "command"],
        default="task",
        help="corral's noop in W1/W2: the registered Python task, or the command job `true`",
    )
    ap.add_argument("--w6-hosts", type=int, default=20, help="W6 sshd hosts (default %(default)s)")
    ap.add_argument(
        "--w6-peers",
        default="corral,asyncssh,fabric,pssh,execnet,openssh,ansible",
        help="W6 participants in run order (default %(default)s)",
    )
    ap.add_argument(
        "--w6-warm-rounds", type=int, default=5, help="W6 warm rounds, median (default %(default)s)"
    )
    ap.add_argument(
        "--w6-seq",
        type=int,
        default=100,
        help="W6 commands in a row on one host (default %(default)s)",
    )
    ap.add_argument("--w7-mib", type=int, default=1024, help="W7 stdout MiB (default %(default)s)")
    ap.add_argument("--w8-mib", type=int, default=1024, help="W8 object MiB (default %(default)s)")
    ap.add_argument(
        "--w8-backends", default="dir,s3", help="W8 object backends (default %(default)s)"
    )
    ap.add_argument(
        "--dash-jobs",
        type=int,
        default=100_000,
        help="dashboard: jobs stored (default %(default)s)",
    )
    ap.add_argument(
        "--dash-runs",
        type=int,
        default=1_000,
        help="dashboard: runs they are in (default %(default)s)",
    )
    ap.add_argument(
        "--dash-requests",
        type=int,
        default=200,
        help="dashboard: timed GETs of each page (default %(default)s)",
    )
    ap.add_argument(
        "--dash-lines",
        type=int,
        default=50,
        help="dashboard: log lines timed (default %(default)s)",
    )
    ap.add_argument(
        "--out",
        default="bench/results/latest.json",
        help="JSON output; the Markdown table goes next to it (.md)",
    )
    ap.add_argument(
        "--workdir",
        default=None,
        help="scratch directory (default: bench/.work/run-PID, removed afterwards)",
    )
    ap.add_argument("--keep-workdir", action="store_true", help="keep logs and data files")
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=90,
        help="watchdog: interrupt the run after this long (default %(default)s)",
    )
    ap.add_argument(
        "--render",
        metavar="JSON",
        default=None,
        help="run nothing: print the tables of a results JSON again, rewrite its .md",
    )
    a = ap.parse_args(argv)
    a.workloads = [w.strip().upper() for w in a.workloads.split(",") if w.strip()]
    if a.workloads == ["ALL"]:
        a.workloads = list(ALL_WORKLOADS)
    a.w6_peers = [p.strip().lower() for p in a.w6_peers.split(",") if p.strip()]
    a.w8_backends = [b.strip().lower() for b in a.w8_backends.split(",") if b.strip()]
    from bench import w6_fleet, w8_objects

    for p in a.w6_peers:
        if p not in w6_fleet.PEERS:
            ap.error(f"unknown W6 peer {p!r} (have {', '.join(w6_fleet.PEERS)})")
    for b in a.w8_backends:
        if b not in w8_objects.BACKENDS:
            ap.error(f"unknown W8 backend {b!r} (have {', '.join(w8_objects.BACKENDS)})")
    a.systems = [s.strip().lower() for s in a.systems.split(",") if s.strip()]
    for w in a.workloads:
        if w not in ALL_WORKLOADS:
            ap.error(f"unknown workload {w!r} (have {', '.join(ALL_WORKLOADS)})")
    for s in a.systems:
        if s not in ALL_SYSTEMS:
            ap.error(f"unknown system {s!r} (have {', '.join(ALL_SYSTEMS)})")
    if a.reps < 1:
        ap.error("--reps must be >= 1")
    return a


def host_info() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem),
        "kernel": platform.release(),
    }


def command_line(argv: list[str] | None) -> str:
    entry = os.environ.get("BENCH_ENTRY", "python -m bench")  # bench/run.sh sets it
    args = sys.argv[1:] if argv is None else argv
    return (entry + " " + shlex.join(args)).strip()


def install_watchdog(minutes: float) -> None:
    """Interrupt the main thread after ``minutes``; hard-stop 2 minutes later."""

    def soft() -> None:
        log(f"watchdog: {minutes:g} min passed, interrupting")
        _thread.interrupt_main()

    def hard() -> None:
        log("watchdog: still running, killing what was started and exiting")
        procs.stop_all(grace=2)
        os._exit(3)

    for delay, fn in ((minutes * 60, soft), (minutes * 60 + 120, hard)):
        t = threading.Timer(delay, fn)
        t.daemon = True
        t.start()


def run_system(name: str, rep: int, a, workdir: Path, raw: dict, errors: dict) -> bool:
    """One repetition of one system; returns False if it could not start."""
    system = load(name, workdir / name)
    (workdir / name).mkdir(parents=True, exist_ok=True)
    put = raw.setdefault(name, {})

    def record(vals: dict[str, float]) -> None:
        for k, v in vals.items():
            put.setdefault(k, [None] * a.reps)[rep] = v

    try:
        t0 = time.monotonic()
        try:
            system.start()
        except Exception as exc:
            errors.setdefault(name, []).append(f"rep {rep + 1}: start failed: {_err(exc)}")
            log(f"{name}: start failed: {_err(exc)}")
            return False
        log(f"{name}: started in {time.monotonic() - t0:.1f} s")
        steps = []
        if "W1" in a.workloads:
            steps.append(("W1 single", lambda: workloads.w1(system, a.w1_n, "single")))
            if system.has_batch:
                steps.append(("W1 batch", lambda: workloads.w1(system, a.w1_n, "batch")))
        if "W2" in a.workloads:
            steps.append(("W2", lambda: workloads.w2(system, a.w2_n)))
        if "W3" in a.workloads:
            steps.append(("W3", lambda: workloads.w3(system, a.w3_n, a.w3_mode == "batch")))
        for label, fn in steps:
            try:
                vals = fn()
            except Exception as exc:
                errors.setdefault(name, []).append(f"rep {rep + 1} {label}: {_err(exc)}")
                log(f"{name} {label}: FAILED: {_err(exc)}")
                try:
                    system.check_alive()
                except Exception:
                    log(f"{name}: a process died; skipping its remaining workloads")
                    break
                continue
            record(vals)
            log(f"{name} {label}: " + ", ".join(f"{k}={report.fmt(v)}" for k, v in vals.items()))
        return True
    finally:
        try:
            system.stop()
        except Exception as exc:
            log(f"{name}: stop: {_err(exc)}")


def run_extras(rep: int, a, workdir: Path, raw: dict, errors: dict) -> None:
    """One repetition of W6, W7, W8 and the dashboard; each interleaves its own participants."""
    from bench import dash_bench, w6_fleet, w7_stdout, w8_objects

    steps = {
        "W6": lambda: w6_fleet.measure(
            workdir / "w6",
            a.w6_peers,
            a.w6_hosts,
            a.w6_warm_rounds,
            a.w6_seq,
            log=log,
            errors=errors,
        ),
        "W7": lambda: w7_stdout.measure(workdir / "w7", a.w7_mib, log=log),
        "W8": lambda: w8_objects.measure(workdir / "w8", a.w8_mib, a.w8_backends, rep, log=log),
        "DASH": lambda: dash_bench.measure(
            workdir / "dash", a.dash_jobs, a.dash_runs, a.dash_requests, a.dash_lines, log=log
        ),
    }
    for w in EXTRA_WORKLOADS:
        if w not in a.workloads:
            continue
        log(f"--- rep {rep + 1}/{a.reps}: {w}")
        try:
            rows = steps[w]()
        except Exception as exc:
            errors.setdefault(w, []).append(f"rep {rep + 1}: {_err(exc)}")
            log(f"{w}: FAILED: {_err(exc)}")
            continue
        finally:
            procs.stop_all()
        for row, metrics in rows.items():
            for k, v in metrics.items():
                raw.setdefault(row, {}).setdefault(k, [None] * a.reps)[rep] = v
    if "W8" in a.workloads and rep == a.reps - 1:
        w8_objects.cleanup(workdir / "w8")


def _err(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) < 2000 else text[:2000] + " …"


def render(path: Path) -> int:
    """Print the tables of an earlier run again and rewrite its Markdown file."""
    data = json.loads(path.read_text())
    cfg, meta = data["config"], data["meta"]
    systems = [s for s in cfg["systems"] if s != "floor"]
    labels = {s: LABELS.get(s, s) for s in systems}
    tabs = report.tables(data["summary"], systems, labels, cfg)
    md_path = path.with_suffix(".md")
    md_path.write_text(report.markdown(tabs, meta, data["errors"], data["notes"]))
    print(report.console(tabs))
    print(f"\nwrote {md_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.render:
        return render(Path(a.render))
    os.environ["BENCH_CORRAL_NOOP"] = a.corral_noop  # read by the corral adapter
    if a.corral_noop == "command":
        LABELS["corral"] = "corral (command `true`)"
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    install_watchdog(a.max_minutes)
    default_workdir = procs.REPO_ROOT / "bench" / ".work" / f"run-{os.getpid()}"
    workdir = Path(a.workdir or default_workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(a.out)
    if not out.is_absolute():
        out = procs.REPO_ROOT / out

    raw: dict[str, dict[str, list]] = {}
    errors: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    notes: dict[str, str] = {}
    for name in a.systems:
        if name == "floor":
            versions["floor"] = f"Python {platform.python_version()}, SQLite {_sqlite_version()}"
            continue
        try:
            s = load(name, workdir / name)
            versions[name] = s.version()
            notes[LABELS.get(name, name)] = s.describe()
        except Exception as exc:
            versions[name] = f"unavailable ({_err(exc).splitlines()[0][:120]})"
            errors.setdefault(name, []).append(f"adapter: {_err(exc)}")
    _extra_versions(a, versions, notes)
    dead: set[str] = {n for n in a.systems if n in ADAPTERS and n in errors}
    interrupted = False
    started = time.monotonic()
    try:
        for rep in range(a.reps):
            for name in a.systems if any(w in QUEUE_WORKLOADS for w in a.workloads) else []:
                log(f"--- rep {rep + 1}/{a.reps}: {name}")
                if name == "floor":
                    try:
                        vals = floors.measure(a.workloads, a.w1_n, a.w2_n, a.w3_n, workdir, log=log)
                        for row, metrics in vals.items():
                            for k, v in metrics.items():
                                raw.setdefault(row, {}).setdefault(k, [None] * a.reps)[rep] = v
                    except Exception as exc:
                        errors.setdefault("floor", []).append(f"rep {rep + 1}: {_err(exc)}")
                        log(f"floor: FAILED: {_err(exc)}")
                    continue
                if name in dead:
                    log(f"{name}: skipped (failed to start before)")
                    continue
                if not run_system(name, rep, a, workdir, raw, errors):
                    dead.add(name)
            run_extras(rep, a, workdir, raw, errors)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything that was started")
    except Exception:
        traceback.print_exc()
        errors.setdefault("harness", []).append(traceback.format_exc())
    finally:
        procs.stop_all()

    _add_w3_shares(raw, a.reps)
    summary = report.summarize(raw)
    systems = [s for s in a.systems if s != "floor"]
    labels = {s: LABELS.get(s, s) for s in systems}
    cfg = {
        "w1_n": a.w1_n,
        "w2_n": a.w2_n,
        "w3_n": a.w3_n,
        "w6_hosts": a.w6_hosts,
        "w6_seq": a.w6_seq,
        "w6_warm_rounds": a.w6_warm_rounds,
        "w7_mib": a.w7_mib,
        "w8_mib": a.w8_mib,
        "dash_jobs": a.dash_jobs,
        "dash_runs": a.dash_runs,
        "dash_requests": a.dash_requests,
        "dash_lines": a.dash_lines,
    }
    tabs = report.tables(summary, systems, labels, cfg)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": host_info(),
        "python": platform.python_version(),
        "command": command_line(argv),
        "effective": "python -m bench "
        + shlex.join(
            [
                "--workloads",
                ",".join(a.workloads),
                "--systems",
                ",".join(a.systems),
                "--reps",
                str(a.reps),
                "--w1-n",
                str(a.w1_n),
                "--w2-n",
                str(a.w2_n),
                "--w3-n",
                str(a.w3_n),
                "--w3-mode",
                a.w3_mode,
                "--corral-noop",
                a.corral_noop,
                *_extra_flags(a),
                "--out",
                a.out,
            ]
        ),
        "reps": a.reps,
        "order": a.systems,
        "versions": versions,
        "interrupted": interrupted,
        "duration_s": round(time.monotonic() - started, 1),
    }
    payload = {
        "meta": meta,
        "config": vars(a),
        "raw": raw,
        "summary": summary,
        "errors": errors,
        "notes": notes,
    }
    report.write_json(out, payload)
    md_path = out.with_suffix(".md")
    md_path.write_text(report.markdown(tabs, meta, errors, notes))
    print(report.console(tabs))
    failed = {s: e for s, e in errors.items() if e}
    if failed:
        print("\nFailures:")
        for s, errs in failed.items():
            for e in errs:
                print(f"  {s}: {e.splitlines()[0][:300]}")
    print(f"\nwrote {out} and {md_path} ({meta['duration_s']} s)")
    if not a.keep_workdir and not a.workdir and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and data in {workdir}")
    return 130 if interrupted else 0


def _add_w3_shares(raw: dict, reps: int) -> None:
    floor2 = raw.get("floor:subprocess2", {}).get("w3_e2e_per_s")
    if not floor2:
        return
    for name, metrics in raw.items():
        if name.startswith("floor") or "w3_e2e_per_s" not in metrics:
            continue
        metrics["w3_share_of_floor2"] = [
            (v / f if v is not None and f else None)
            for v, f in zip(metrics["w3_e2e_per_s"], floor2, strict=True)
        ]


def _extra_flags(a) -> list[str]:
    out: list[str] = []
    if "W6" in a.workloads:
        out += ["--w6-hosts", str(a.w6_hosts), "--w6-peers", ",".join(a.w6_peers)]
        out += ["--w6-warm-rounds", str(a.w6_warm_rounds), "--w6-seq", str(a.w6_seq)]
    if "W7" in a.workloads:
        out += ["--w7-mib", str(a.w7_mib)]
    if "W8" in a.workloads:
        out += ["--w8-mib", str(a.w8_mib), "--w8-backends", ",".join(a.w8_backends)]
    if "DASH" in a.workloads:
        out += ["--dash-jobs", str(a.dash_jobs), "--dash-runs", str(a.dash_runs)]
        out += ["--dash-requests", str(a.dash_requests), "--dash-lines", str(a.dash_lines)]
    return out


def _extra_versions(a, versions: dict[str, str], notes: dict[str, str]) -> None:
    """Versions and how-it-runs lines of the participants of W6, W7, W8 and the dashboard."""
    from bench import dash_bench, w6_fleet, w7_stdout, w8_objects

    extras = [w for w in a.workloads if w in EXTRA_WORKLOADS]
    if extras and "corral" not in versions:
        versions["corral"] = load("corral", Path("/nonexistent")).version()
    if "W6" in a.workloads:
        for name, v in w6_fleet.versions(a.w6_peers).items():
            if name != "corral":
                versions[f"W6 {name}"] = v
        for name in a.w6_peers:
            notes[f"W6 {name}"] = w6_fleet.CLASSES[name].about
        notes["W6 hosts"] = (
            f"{a.w6_hosts} `sshd` (OpenSSH, Debian) on loopback ports, one RSA user key, "
            "one shared host key, a generated ssh_config and known_hosts"
        )
    if "W7" in a.workloads:
        notes["W7"] = " ".join((w7_stdout.__doc__ or "").split("\n\n")[1].split())
    if "W8" in a.workloads:
        notes["W8"] = " ".join((w8_objects.__doc__ or "").split("\n\n")[1].split())
        if "s3" in a.w8_backends:
            versions["W8 SeaweedFS"] = w8_objects.SeaweedFS(Path("/nonexistent")).version()
    if "DASH" in a.workloads:
        notes["dashboard"] = " ".join((dash_bench.__doc__ or "").split("\n\n")[1].split())
        try:
            from importlib import metadata

            versions["dashboard browser"] = (
                f"playwright {metadata.version('playwright')}, {dash_bench.CHROMIUM}"
            )
        except Exception as exc:
            versions["dashboard browser"] = f"unavailable ({exc})"


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
