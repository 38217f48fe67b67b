# Two commands set up and run everything on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
DURATION ?= 60

.PHONY: demo test lint typecheck loadtest loadtest-smoke check-install clean

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh

demo: $(VENV)/.installed
	$(BIN)/acd demo --duration $(DURATION)

# Load test (docs/load-testing.md): the peak-hour scenario, one simulated hour in 6 minutes.
LOADTEST_SCENARIO ?= load_tests/scenarios/peak_hour.yaml
LOADTEST_DURATION ?= 360
LOADTEST_REPORT ?= reports/loadtest
loadtest: $(VENV)/.installed
	$(BIN)/acd loadtest --scenario $(LOADTEST_SCENARIO) --duration $(LOADTEST_DURATION) --report $(LOADTEST_REPORT)

# The short load test `make test` also runs (tests/test_loadtest.py): the Erlang C check, 20 s.
loadtest-smoke: $(VENV)/.installed
	$(BIN)/acd loadtest --scenario load_tests/scenarios/erlang_check.yaml --duration 20 --json

test: $(VENV)/.installed
	$(BIN)/ruff check router workers load_tests tests
	$(BIN)/mypy
	$(BIN)/pytest

# `pip install .` without the lab, as deploy/Dockerfile does, into a fresh venv: the
# production `acd` works and none of the lab is there (tests/test_install.py, ~30 s; make
# test runs it too).
check-install: $(VENV)/.installed
	$(BIN)/pytest -q tests/test_install.py

lint: $(VENV)/.installed
	$(BIN)/ruff check router workers load_tests tests

typecheck: $(VENV)/.installed
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
