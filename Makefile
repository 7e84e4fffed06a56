# `make run` sets up and starts the app on its default (simulated) data;
# `make test` sets up and runs the whole test suite; `make test-fast` skips the
# slow (training) and browser tests; `make lint` runs ruff. Each creates the
# virtual environment it needs (VENV, default .venv) from nothing on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
# The editable install points at this checkout: redo it when the checkout moves (CI reuses one venv across clones).
PROJECT_HASH := $(shell (echo $(CURDIR); cat pyproject.toml) | sha256sum | cut -c1-12)
PROJECT_STAMP := $(VENV)/.project-$(PROJECT_HASH)
SHARED_DATA ?= $(abspath ../shared/data)
PORT ?= 8501
# Test files run in parallel, one file per worker process (module fixtures are made once): WORKERS=0 runs serially.
WORKERS ?= auto
PYTEST := NMNIST_SHARED_DATA=$${NMNIST_SHARED_DATA:-$(SHARED_DATA)} $(PY) -m pytest

.PHONY: venv run test test-fast lint bench data clean

# requirements.txt is the one list of dependencies; the project itself (core, benchmarks) is then
# installed editable without resolving anything again.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(PROJECT_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.project-*
	touch $@

venv: $(PROJECT_STAMP)

run: venv
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: venv
	$(PYTEST) -q -n $(WORKERS) --dist loadfile

test-fast: venv
	$(PYTEST) -q -n $(WORKERS) --dist loadfile -m "not slow and not browser"

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	NMNIST_SHARED_DATA=$${NMNIST_SHARED_DATA:-$(SHARED_DATA)} $(PY) -m benchmarks

data: venv
	$(PY) -m core.data generate

clean:
	rm -rf .data .pytest_cache test-artifacts
