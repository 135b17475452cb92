# The two set-up commands of the README:
#   make demo   - create/reuse .venv, install jtsm, run the end-to-end demo
#   make test   - create/reuse .venv, install jtsm + test tools, run lint and the test suite
#
# TORCH_SPEC picks the torch + torchvision builds, installed before jtsm. The default is PyPI's
# build (CUDA, which runs on CPU-only machines too). Override it to choose another, e.g.
#   make test TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.jtsm-installed

.PHONY: demo demo-quick test test-all lint install bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The editable install links each package file (setup.py: strict mode), so it is redone when
# the set of files changes: FILESET's name is a digest of the file list.
FILES_DIGEST := $(shell find jtsm jtsm_cli plugins -name '*.py' -o -name '*.toml' 2>/dev/null \
	| sort | cksum | cut -d' ' -f1)
FILESET := $(VENV)/.files-$(FILES_DIGEST)

$(FILESET): $(BIN)/python
	rm -f $(VENV)/.files-*
	touch $@

# Reinstall when the package metadata, its files or the C extension (built by setup.py) change.
$(STAMP): $(BIN)/python $(FILESET) pyproject.toml setup.py jtsm/evaluation/_pngcore.c jtsm/ops/_binnedmax.c
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	$(BIN)/python -m pip install --quiet -e examples/jtsm-sam-plugin
	# panopticapi (the PQ reference) is not on PyPI; panopticapi-lite ships the same module but
	# pins numpy<2 in its metadata, so it is installed without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps panopticapi-lite
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jtsm demo --out demo_out

demo-quick: $(STAMP)
	$(BIN)/jtsm demo --out demo_out_quick --quick

lint: $(STAMP)
	$(BIN)/ruff check jtsm jtsm_cli plugins tests benchmarks examples

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-all: $(STAMP) lint
	$(BIN)/python -m pytest -q -m ""

# The documentation site (docs/ -> site/); --strict fails on any broken link or page.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info demo_out demo_out_quick site jtsm/evaluation/*.so jtsm/ops/*.so
