# One task runner for contributors, the README and CI alike.
PYTHON ?= python3
ROOT   := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
VENV   ?= $(ROOT).venv
BIN     = $(VENV)/bin
PORT   ?= 8000
GATEWAY_PORT ?= 8079
COV_FLOOR ?= 85
PYTEST_ARGS ?=

.PHONY: install dev test lint format bench package clean

$(BIN)/jobq: $(ROOT)pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '$(ROOT).[dev]'
	@touch $@

install: $(BIN)/jobq  ## create the virtualenv and install jobq with its dev extras

dev: install  ## run the whole local stack (gateway, API, consumer, scheduler) in the working directory
	$(BIN)/jobq dev --port $(PORT) --gateway-port $(GATEWAY_PORT) $(if $(REDIS_URL),--redis-url $(REDIS_URL))

test: install  ## run the test suite with coverage (real Redis from JOBQ_TEST_REDIS_URL)
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COV_FLOOR) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install  ## print benchmark figures (needs a Redis on 127.0.0.1:6379)
	$(BIN)/python -m bench $(BENCH)

package:  ## build the Lambda package offline (.serverless/), as CI checks it; see infra/deploy.md
	npm ci --no-audit --no-fund
	SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off npm run package

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage* htmlcov
