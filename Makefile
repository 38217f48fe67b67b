# Two commands set up and run everything on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
DURATION ?= 60

.PHONY: demo test lint typecheck loadtest-smoke clean

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh

demo: $(VENV)/.installed
	$(BIN)/acd demo --duration $(DURATION)

test: $(VENV)/.installed
	$(BIN)/ruff check router workers load_tests tests
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check router workers load_tests tests

typecheck: $(VENV)/.installed
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
