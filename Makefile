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

bench: install
	$(PY) bench/loader.py

clean:
	rm -rf $(VENV) build *.egg-info
