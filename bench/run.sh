#!/usr/bin/env bash
# corral's benchmark, one command:
#   bench/run.sh                               # W1,W2,W3 × all systems × 3 reps
#   bench/run.sh --reps 1 --w1-n 1000          # any flag of `python -m bench --help`
# Makes bench/.venv (peers from bench/requirements.txt + corral editable from
# the repo root), then runs the harness from the repo root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.bench-installed"
if [ ! -f "$STAMP" ] || [ "$HERE/requirements.txt" -nt "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    # corral may be half-written while the benchmark is developed: if it does not
    # install, the harness still runs and reports corral as failed.
    if "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT"; then
        touch "$STAMP"
    else
        echo "warning: 'pip install -e $ROOT' failed; corral will be reported as failed" >&2
    fi
fi

cd "$ROOT"
export BENCH_ENTRY="bench/run.sh"  # shown as the command in the report
exec "$VENV/bin/python" -m bench "$@"
