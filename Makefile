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

.PHONY: demo demo-quick test test-all lint install bench docs clean gpu-wheels

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

# Wheels for an offline GPU node (benchmarks/gpu_check.sh --wheels gpu_wheels): what jtsm needs
# beyond the node's own Python with torch, torchvision, numpy, OpenCV, scikit-image, scipy,
# click, rich and pluggy - pycocotools (RLE masks, mask AP), pyspng (faster PNG decoding) and
# setuptools >= 77 (to build jtsm there). Run on a networked machine; no dependencies are
# fetched. For another node change the variables, e.g.
#   make gpu-wheels GPU_PYTHON=3.11 GPU_PLATFORMS="manylinux2014_x86_64"
# (pyspng's Python 3.12 wheel needs glibc >= 2.28: manylinux_2_28; without it jtsm decodes
# PNGs with OpenCV.)
GPU_WHEELS_DIR ?= gpu_wheels
GPU_PYTHON ?= 3.12
GPU_PLATFORMS ?= manylinux2014_x86_64 manylinux_2_28_x86_64
GPU_WHEELS_PKGS ?= "pycocotools>=2.0.7" "pyspng>=0.1.4" "setuptools>=77"

gpu-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) \
		$(foreach p,$(GPU_PLATFORMS),--platform $(p)) -d $(GPU_WHEELS_DIR) $(GPU_WHEELS_PKGS)

clean:
	rm -rf $(VENV) build *.egg-info demo_out demo_out_quick site jtsm/evaluation/*.so jtsm/ops/*.so
