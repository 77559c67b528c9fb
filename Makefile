# The README's commands. `make demo` runs the demo on embedded defaults; `make test`
# installs everything the suite needs and runs lint and every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
TSC := .tools/tsc/node_modules/.bin/tsc

.PHONY: demo demo-cluster test test-fast lint format bench bench-quick clean
CLUSTER_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/0)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The demo needs the package alone; the tests also need the dev extras (pytest, Playwright,
# ruff, mypy), which take most of a first install.
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/daphne -b $(HOST) -p $(PORT) demo_project.asgi:application

# Two daphne nodes on one Redis (ports 8001 and 8002): multi-node broadcast and the admin
# console across nodes. Needs a Redis (REDIS_URL, default 127.0.0.1:6379). Ctrl-C stops both.
demo-cluster: $(VENV)/.installed-demo
	REDIS_URL=$(CLUSTER_REDIS_URL) $(BIN)/python manage.py migrate --noinput
	REDIS_URL=$(CLUSTER_REDIS_URL) $(BIN)/python manage.py seed_demo
	@echo "Node A: http://$(HOST):8001/  Node B: http://$(HOST):8002/"
	@bash -c 'trap "kill 0" INT TERM EXIT; \
	  REDIS_URL=$(CLUSTER_REDIS_URL) $(BIN)/daphne -b $(HOST) -p 8001 demo_project.asgi:application & \
	  REDIS_URL=$(CLUSTER_REDIS_URL) $(BIN)/daphne -b $(HOST) -p 8002 demo_project.asgi:application & \
	  wait'

test: $(VENV)/.installed
	@tests/ensure_redis.sh
	@tests/ensure_postgres.sh
	@tests/browser/ensure_chromium.sh
	@tests/ensure_nginx.sh
	@tests/ensure_tsc.sh
	$(TSC) -p tsconfig.json
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The tests that start no server (no daphne node, Chromium or private redis-server): the
# `server` marker is added in tests/conftest.py. No lint; `make test` runs everything.
test-fast: $(VENV)/.installed
	@tests/ensure_redis.sh
	@tests/ensure_postgres.sh
	$(BIN)/python -m pytest -m "not server"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@tests/ensure_tsc.sh
	$(TSC) -p tsconfig.json

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run

bench-quick: $(VENV)/.installed
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
