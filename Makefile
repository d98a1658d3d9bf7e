# Cardinsa — every set-up step is here, so `make up` and `make test` work on a
# fresh machine with nothing but Python 3.11+.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export BUF_CACHE_DIR := $(CURDIR)/.cache/buf
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PROTO_SRC := $(shell find protos third_party/googleapis -name '*.proto' 2>/dev/null) buf.yaml scripts/codegen.py \
	gateway/cardinsa_gateway/openapi.py gateway/cardinsa_gateway/contract.py
GEN_STAMP := gen/.stamp
# Every extra of pyproject.toml: the runtime dependencies alone are what an image
# ships; a workstation also needs code generation, Envoy, the local PostgreSQL
# and the development tools.
EXTRAS := codegen,gateway,local,dev
VENV_STAMP := $(VENV)/.installed

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	@echo "==> creating the virtual environment in $(VENV) and installing dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## create .venv and install everything

$(GEN_STAMP): $(VENV_STAMP) $(PROTO_SRC)
	@$(PY) scripts/codegen.py
	@touch $@

.PHONY: proto
proto: $(VENV_STAMP) ## regenerate Python stubs, descriptor set (and lint protos)
	@$(PY) scripts/codegen.py
	@touch $(GEN_STAMP)

.PHONY: setup
setup: $(GEN_STAMP) ## everything `up` and `test` need

.PHONY: lint
lint: setup ## ruff, mypy, import-linter, buf lint
	@echo "==> ruff"; $(BIN)/ruff check . && $(BIN)/ruff format --check .
	@echo "==> mypy"; $(BIN)/mypy
	@echo "==> import-linter"; $(BIN)/lint-imports
	@echo "==> buf lint"; $(BIN)/buf lint

.PHONY: test
test: lint ## everything: linters, unit, integration and end-to-end tests
	@echo "==> pytest"; $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: up
up: setup ## start the whole suite (Ctrl-C stops it); ARGS="--workers 2"
	@$(PY) -m cardinsa_tools.suite $(ARGS)

.PHONY: premium-story
premium-story: setup ## a policy's premium transactions, bind to reinstatement (own suite)
	@$(PY) -m cardinsa_tools.premium_story $(ARGS)

.PHONY: bench
bench: setup ## benchmark the suite (installs h2load, wrk); ARGS="--use-running", "--workers 2"
	@$(PY) -m cardinsa_tools.bench $(ARGS)

.PHONY: bench-smoke
bench-smoke: setup ## the quick run of the benchmark (make test runs it too)
	@$(PY) -m cardinsa_tools.bench --quick $(ARGS)

.PHONY: event-catalogue
event-catalogue: setup ## regenerate docs/event-catalogue.md from the protos
	@$(PY) -m cardinsa_tools.event_catalogue $(ARGS)

.PHONY: fmt
fmt: $(VENV_STAMP) ## format the code
	@$(BIN)/ruff format . && $(BIN)/ruff check --fix .

.PHONY: clean
clean: ## remove generated code and caches (keeps .venv and .data)
	rm -rf gen .cache .pytest_cache .mypy_cache .ruff_cache
