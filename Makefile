# `make test` builds .venv from nothing (CPU torch first, so fastai never pulls CUDA torch),
# installs this package, and runs the test suite on the real data in ../shared/data.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export NLTK_DATA ?= $(abspath ../shared/data/nltk_data)
export FASTAI_CONTEXT_DATA ?= $(abspath ../shared/data)
export PYTHONUNBUFFERED := 1

.PHONY: install test demo bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 torchvision==0.28.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n 2 --dist loadfile -q tests

# `make demo`: the whole workflow on real data (the energy LM on the Billboard lyrics, the VAE on
# Spotify titles), every step's run folder inside DEMO_DIR.
# Data: the folder FASTAI_CONTEXT_DATA if it exists, else the checksummed public downloads.
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
DEMO_CLI := $(VENV)/bin/fastai-context

demo: install
	@set -e; d=$(DEMO_DIR); start=$$(date +%s); \
	if [ ! -d "$$FASTAI_CONTEXT_DATA" ]; then unset FASTAI_CONTEXT_DATA; fi; \
	$(DEMO_CLI) train-lm demo-lm --run-dir $$d/lm; \
	$(DEMO_CLI) generate demo-generate model=$$d/lm --run-dir $$d/generate; \
	$(DEMO_CLI) wordclouds samples=$$d/generate --run-dir $$d/wordclouds; \
	$(DEMO_CLI) train-vae demo-vae --run-dir $$d/vae; \
	$(DEMO_CLI) homotopy demo-homotopy model=$$d/vae --run-dir $$d/homotopy; \
	echo "demo finished in $$(( $$(date +%s) - start )) s: everything is in $$d"

bench: install
	$(PY) bench/loader.py

clean:
	rm -rf $(VENV) build *.egg-info
