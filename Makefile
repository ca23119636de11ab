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

.PHONY: install run test lint fmt migrate revision openapi bench

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

run: install migrate
	$(BIN)/uvicorn app.main:app --host 127.0.0.1 --port $(PORT) --log-level $(LOG_LEVEL)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict app

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: install
	$(BIN)/alembic upgrade head

# make revision m="what changed"
revision: install
	$(BIN)/alembic revision --autogenerate -m "$(m)"

openapi: install
	$(BIN)/python -m app.openapi_export openapi/openapi.json

bench: install
	$(BIN)/python bench/run.py
