# One command for people and CI alike.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint typecheck bench bench-all clean

$(BIN)/corral: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/corral

install: $(BIN)/corral

## Start corral with its embedded defaults (SQLite + a local worker) and a demo run.
demo: install
	$(BIN)/corral serve --demo

## Install the test dependencies and run lint, type checks and the whole suite.
test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

## Benchmarks against the peer systems (separate environment in bench/.venv).
bench:
	bash bench/run.sh

## Every workload: W1–W3, then W6 (sshd fleet), W7, W8 and the dashboard.
bench-all:
	bash bench/run.sh --workloads all

clean:
	rm -rf $(VENV) build dist src/*.egg-info
