# grid_platform: `make run` (the platform on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

# Optional local overrides (see .env.example).
-include .env
GRID_DATA_DIR ?= $(CURDIR)/data
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GRID_DATA_DIR := $(abspath $(GRID_DATA_DIR))
export DAGSTER_HOME := $(abspath $(DAGSTER_HOME))
export GRID_WAREHOUSE := $(GRID_DATA_DIR)/warehouse.duckdb
# dbt and dagster of the project environment, without activating it.
export PATH := $(BIN):$(PATH)

.PHONY: install manifest data run test bench lock lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	# --copies: a venv whose python is a symlink into pyenv can be mistaken by uv for another
	# venv on the same interpreter (wrong shebangs); a copied interpreter has its own path.
	test -x $(BIN)/python || $(PYTHON) -m venv --copies $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.8
	# uv targets the environment named by VIRTUAL_ENV (an explicit --python may resolve
	# through pyenv symlinks to another venv sharing the same interpreter).
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip sync -q requirements.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q --no-deps -e .
	test "$$(head -c 200 $(BIN)/dagster | head -1)" = "#!$(BIN)/python"
	touch $@

# @dbt_assets needs dbt's manifest at import time.
manifest: install
	cd dbt_project && dbt parse --quiet --profiles-dir .

# Reference data downloaded from the package registry at set-up, never committed: the DWD test
# reference years (demandlib wheel) and the licensed ENTSO-E CGMES test configurations.
data: install
	-$(BIN)/python scripts/fetch_demandlib.py
	-$(BIN)/python scripts/fetch_cgmes.py

run: manifest
	scripts/run.sh

test: manifest data
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	@for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

# Re-resolve the lock file after changing pyproject.toml.
lock:
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

lint: install
	$(BIN)/ruff check grid_platform tests benchmarks

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs
