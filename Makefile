# `make run` sets up and starts the app on its default (simulated) data;
# `make test` sets up and runs the whole test suite. Both create the virtual
# environment they need (VENV, default .venv) from nothing on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
SHARED_DATA ?= $(abspath ../shared/data)
PORT ?= 8501

.PHONY: venv run test bench data clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

run: venv
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: venv
	NMNIST_SHARED_DATA=$${NMNIST_SHARED_DATA:-$(SHARED_DATA)} $(PY) -m pytest -q

bench: venv
	NMNIST_SHARED_DATA=$${NMNIST_SHARED_DATA:-$(SHARED_DATA)} $(PY) -m benchmarks

data: venv
	$(PY) -m core.data generate

clean:
	rm -rf .data .pytest_cache test-artifacts
