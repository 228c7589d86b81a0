# Fiat — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck check bench clean system-deps runtime-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Fiat's main job on embedded defaults (SQLite, local keys): init a home, log, serve.
run: $(STAMP) runtime-deps
	$(VENV)/bin/fiat demo

## The whole test suite (installs what it needs first).
test: $(STAMP) system-deps
	$(PY) -m pytest -n 2 -q

## System packages: bubblewrap (`fiat run`'s containment) and what some tests use (Go's
## sumdb/note and tlog for interop checks).
system-deps:
	@bash scripts/system-deps.sh

## Only what `fiat run` needs: bubblewrap.
runtime-deps:
	@bash scripts/system-deps.sh --runtime

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(STAMP)
	$(VENV)/bin/fiat bench log
	$(VENV)/bin/fiat bench verify
	$(VENV)/bin/fiat bench authorize
	$(VENV)/bin/fiat bench runtime
	$(VENV)/bin/fiat bench mcp
	$(VENV)/bin/fiat bench ui

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
