# Two commands matter on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PRATAI_HOME ?= $(CURDIR)/.pratai

.PHONY: run test lint bench install install-test sandbox-deps clean

$(BIN)/pratai: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

install: $(BIN)/pratai sandbox-deps

$(VENV)/.test-deps: $(BIN)/pratai
	$(BIN)/pip install -q -e '.[test,lint]'
	@touch $@

install-test: install $(VENV)/.test-deps

$(VENV)/.bench-deps: $(VENV)/.test-deps
	$(BIN)/pip install -q -e '.[test,lint,bench]'
	@touch $@

sandbox-deps:
	@$(CURDIR)/scripts/ensure-sandbox-deps

run: install
	$(BIN)/pratai serve

test: install-test
	$(BIN)/pytest -q

lint: install-test
	$(BIN)/ruff check pratai tests bench
	$(BIN)/ruff format --check pratai tests bench
	$(BIN)/mypy pratai

bench: install-test $(VENV)/.bench-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pratai .pytest_cache .mypy_cache .ruff_cache
