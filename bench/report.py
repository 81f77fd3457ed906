"""Summaries (median, min-max), the console table, the JSON and the Markdown file."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

BASE = "corral"

# (metric key, column header, higher is better)
W1_SINGLE = [
    ("w1_single_enqueue_per_s", "enqueue/s", True),
    ("w1_single_e2e_per_s", "end-to-end/s", True),
    ("w1_single_cpu_ms_per_task", "CPU ms/task (system)", False),
    ("w1_single_client_cpu_ms_per_task", "CPU ms/task (client)", False),
    ("w1_rss_server_mb", "RSS server MB", False),
    ("w1_rss_worker_mb", "RSS worker MB", False),
]
W1_BATCH = [
    ("w1_batch_enqueue_per_s", "enqueue/s", True),
    ("w1_batch_e2e_per_s", "end-to-end/s", True),
    ("w1_batch_cpu_ms_per_task", "CPU ms/task (system)", False),
    ("w1_batch_client_cpu_ms_per_task", "CPU ms/task (client)", False),
]
W2_W3 = [
    ("w2_p50_ms", "W2 p50 ms", False),
    ("w2_p99_ms", "W2 p99 ms", False),
    ("w3_e2e_per_s", "W3 shell/s", True),
    ("w3_share_of_floor2", "W3 share of subprocess x2", True),
]
FLOORS = [
    ("floor:loop", "w1_single_e2e_per_s", "noop(i) calls/s in a Python loop"),
    ("floor:loop", "w2_p50_ms", "noop(i) call p50 ms"),
    ("floor:loop", "w2_p99_ms", "noop(i) call p99 ms"),
    ("floor:loop", "w3_e2e_per_s", 'subprocess.run(["true"]) sequential /s'),
    ("floor:subprocess2", "w3_e2e_per_s", 'subprocess.run(["true"]) 2 at a time /s'),
    (
        "floor:sqlite",
        "sqlite_cycles_per_s",
        "SQLite WAL insert→update→select cycles/s (synchronous=FULL)",
    ),
    (
        "floor:http",
        "w1_single_e2e_per_s",
        "empty HTTP requests/s in a row (corral's client, uvicorn)",
    ),
    ("floor:http", "w2_p50_ms", "empty HTTP request p50 ms"),
    ("floor:http", "w2_p99_ms", "empty HTTP request p99 ms"),
]
RATIOS = [
    ("w1_single_enqueue_per_s", "W1 enqueue/s", True),
    ("w1_single_e2e_per_s", "W1 end-to-end/s", True),
    ("w1_batch_e2e_per_s", "W1 batch end-to-end/s", True),
    ("w1_single_cpu_ms_per_task", "W1 CPU ms/task", False),
    ("w2_p50_ms", "W2 p50 ms", False),
    ("w2_p99_ms", "W2 p99 ms", False),
    ("w3_e2e_per_s", "W3 shell/s", True),
]


# W6, W7, W8 and the dashboard: (title, base row, [(row, label)], columns); a row's ratio
# to the base row follows each table. Titles are formatted with the run's config.
EXTRA = [
    (
        "W6 — one command (`true`) on {w6_hosts} sshd hosts: cold, warm round "
        "(median of {w6_warm_rounds}), {w6_seq} in a row on one host",
        "w6:corral",
        [
            ("w6:corral", "corral exec (CLI)"),
            ("w6:corral-api", "corral (API, coordinator side)"),
            ("w6:asyncssh", "asyncssh"),
            ("w6:fabric", "Fabric 3"),
            ("w6:pssh", "parallel-ssh"),
            ("w6:execnet", "execnet (kept channels)"),
            ("w6:openssh", "OpenSSH shell loop"),
            ("w6:ansible", "Ansible ad-hoc"),
        ],
        [
            ("w6_cold_ms", "cold ms", False),
            ("w6_warm_ms", "warm round ms", False),
            ("w6_seq_ms", "{w6_seq} in a row ms", False),
        ],
    ),
    (
        "W7 — one job writing {w7_mib:,} MiB to stdout (log cap raised to fit), "
        "submit → run ended with every byte stored",
        "w7:corral",
        [("w7:corral", "corral"), ("w7:cat", "floor: same bytes, cat > /dev/null")],
        [
            ("w7_mb_per_s", "MB/s", True),
            ("w7_rss_server_mb", "server peak RSS MB (its local worker is in it)", False),
            ("w7_rss_server_before_mb", "server peak RSS before the job MB", False),
        ],
    ),
    (
        "W8 — put and get of a {w8_mib:,} MiB object (Client.put_file / get_file)",
        "w8:corral-dir",
        [
            ("w8:corral-dir", "corral, directory backend"),
            ("w8:corral-s3", "corral, S3 (SeaweedFS)"),
            ("w8:cp", "floor: cp + sync of the same file"),
        ],
        [
            ("w8_put_mb_per_s", "put MB/s", True),
            ("w8_get_mb_per_s", "get MB/s", True),
            ("w8_rss_server_mb", "server peak RSS MB", False),
        ],
    ),
    (
        "Dashboard — {dash_jobs:,} jobs in {dash_runs:,} runs stored; pages timed "
        "{dash_requests} times; {dash_lines} log lines job → browser",
        "dash:corral",
        [("dash:corral", "corral dashboard")],
        [
            ("dash_runs_p50_ms", "runs page p50 ms", False),
            ("dash_runs_p99_ms", "runs page p99 ms", False),
            ("dash_job_p50_ms", "job page p50 ms", False),
            ("dash_job_p99_ms", "job page p99 ms", False),
            ("dash_log_p50_ms", "log line → browser p50 ms", False),
            ("dash_log_p99_ms", "log line → browser p99 ms", False),
        ],
    ),
]


def extra_tables(summary: dict, cfg: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    for title, base_row, rows, cols in EXTRA:
        present = [(r, lab) for r, lab in rows if r in summary]
        if not present:
            continue
        cols = [(k, h.format(**cfg), hib) for k, h, hib in cols]
        keys = [c for c in cols if any(c[0] in summary[r] for r, _ in present)]
        t = title.format(**cfg)
        body = [[lab] + [cell(summary[r].get(k)) for k, _, _ in keys] for r, lab in present]
        out.append((t, ["system"] + [h for _, h, _ in keys], body))
        base = summary.get(base_row, {})
        others = [(r, lab) for r, lab in present if r != base_row]
        rkeys = [c for c in keys if c[0] in base and "rss" not in c[0]]
        if base and others and rkeys:
            rr = []
            for r, lab in others:
                row = [f"{lab} / {dict(rows)[base_row]}"]
                for k, _, _ in rkeys:
                    a, b = summary[r].get(k), base.get(k)
                    row.append(
                        f"{a['median'] / b['median']:.2f}x" if a and b and b["median"] else "—"
                    )
                rr.append(row)
            out.append(
                (
                    "Ratios of the medians (>1 on MB/s: faster than corral; >1 on ms: slower)",
                    ["ratio"] + [h for _, h, _ in rkeys],
                    rr,
                )
            )
    return out


def summarize(raw: dict[str, dict[str, list[float | None]]]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for system, metrics in raw.items():
        out[system] = {}
        for key, vals in metrics.items():
            xs = [v for v in vals if v is not None]
            if xs:
                out[system][key] = {
                    "median": statistics.median(xs),
                    "min": min(xs),
                    "max": max(xs),
                    "n": len(xs),
                }
    return out


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.2f}"
    return f"{v:.2g}"


def cell(s: dict | None) -> str:
    if not s:
        return "—"
    text = fmt(s["median"])
    if s["n"] > 1 and fmt(s["min"]) != fmt(s["max"]):
        text += f" ({fmt(s['min'])}\u2013{fmt(s['max'])})"
    return text


def _rows_with(summary, systems, cols):
    return [s for s in systems if any(k in summary.get(s, {}) for k, _, _ in cols)]


def tables(
    summary: dict, systems: list[str], labels: dict[str, str], cfg: dict
) -> list[tuple[str, list[str], list[list[str]]]]:
    """[(title, header, rows)] — shared by the console and the Markdown output."""
    peers = [s for s in systems if not s.startswith("floor")]
    out = []
    for title, cols in (
        (f"W1 — {cfg['w1_n']:,} noop(i) enqueued one call each, then wait for all", W1_SINGLE),
        (f"W1 batch — the same {cfg['w1_n']:,} through each system's batch API", W1_BATCH),
        (
            f"W2 — {cfg['w2_n']} sequential noop(i) submit→wait→result; "
            f"W3 — {cfg['w3_n']} shell_true(i)",
            W2_W3,
        ),
    ):
        names = _rows_with(summary, peers, cols)
        if not names:
            continue
        rows = [[labels.get(s, s)] + [cell(summary[s].get(k)) for k, _, _ in cols] for s in names]
        out.append((title, ["system"] + [h for _, h, _ in cols], rows))
    frows = []
    for row, key, label in FLOORS:
        s = summary.get(row, {}).get(key)
        if s:
            frows.append([label, cell(s)])
    if frows:
        out.append(("Floors (no system at all)", ["floor", "value"], frows))
    base = summary.get(BASE, {})
    others = [s for s in peers if s != BASE and any(k in summary.get(s, {}) for k, _, _ in RATIOS)]
    if others and not base:
        out.append(("Ratios peer/corral: corral has no figures in this run, so no ratios", [], []))
    elif others:
        rrows = []
        for s in others:
            r = [f"{labels.get(s, s)}/corral"]
            for k, _, _ in RATIOS:
                a, b = summary.get(s, {}).get(k), base.get(k)
                r.append(f"{a['median'] / b['median']:.2f}x" if a and b and b["median"] else "—")
            rrows.append(r)
        title = (
            "Ratios peer/corral of the medians (>1 on a /s column: the peer is faster; "
            ">1 on a ms column: the peer is slower)"
        )
        out.append((title, ["ratio"] + [h for _, h, _ in RATIOS], rrows))
    if "w6_hosts" in cfg:  # runs from before these workloads have no such figures
        out.extend(extra_tables(summary, cfg))
    return out


def console(tabs) -> str:
    lines = []
    for title, header, rows in tabs:
        lines.append("")
        lines.append(title)
        if not header:
            continue
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append(
                "  ".join(
                    (c.ljust(w) if i == 0 else c.rjust(w))
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )
            )
    return "\n".join(lines)


def markdown(tabs, meta: dict, errors: dict[str, list[str]], notes: dict[str, str]) -> str:
    m = []
    if meta.get("interrupted"):
        m.append("**This run was interrupted: the figures below are partial.**")
        m.append("")
    m.append(
        f"Measured {meta['date']} on `{meta['host']['cpu']}`, nproc {meta['host']['nproc']}, "
        f"{meta['host']['mem_gib']} GiB, Linux {meta['host']['kernel']}, "
        f"Python {meta['python']}; {meta['reps']} repetition(s), median and (min\u2013max); "
        f"systems interleaved in one run ({', '.join(meta['order'])}, then again)."
    )
    m.append("")
    m.append("Command:")
    m.append("")
    m.append("```")
    m.append(meta["command"])
    m.append("```")
    m.append("")
    m.append(f"(all flags: `{meta['effective']}`)")
    m.append("")
    m.append("| system | version |")
    m.append("| --- | --- |")
    for s, v in meta["versions"].items():
        m.append(f"| {s} | {v} |")
    for title, header, rows in tabs:
        m.append("")
        m.append(f"**{title}**")
        if not header:
            continue
        m.append("")
        m.append("| " + " | ".join(header) + " |")
        m.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
        for r in rows:
            m.append("| " + " | ".join(r) + " |")
    m.append("")
    m.append("How each system runs here:")
    m.append("")
    for s, d in notes.items():
        m.append(f"- **{s}**: {d}")
    m.append(
        "- CPU ms/task (system): user+system CPU of the system's own processes and their "
        "children (and of the Redis server, or the PostgreSQL backends of its database, where "
        "it uses one) over W1, divided by the task count; (client): the harness process "
        "that submits and waits. RSS: peak (VmHWM) of the server process and of the largest "
        "single worker process at the end of W1; for shared services (Redis, PostgreSQL: "
        "largest backend of the system's database) the RSS at that moment."
    )
    m.append(
        "- W3 goes through the batch API where a system has one, else single calls; "
        "its share is W3 shell/s divided by the 2-process subprocess floor of the same "
        "repetition."
    )
    failed = {s: e for s, e in errors.items() if e}
    if failed:
        m.append("")
        m.append("Failures in this run:")
        m.append("")
        for s, errs in failed.items():
            for e in errs:
                m.append(f"- **{s}**: {e.splitlines()[0][:300]}")
    m.append("")
    return "\n".join(m)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
