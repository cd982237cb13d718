# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev

.PHONY: run test test-fast fuzz bench lint venv migrate demo clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `make run` needs the runtime packages only; `make test` adds the test tools.
$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(RUNTIME_STAMP)

venv: $(DEV_STAMP)

migrate: $(RUNTIME_STAMP)
	$(PY) manage.py migrate --noinput -v 0

demo: migrate
	$(PY) manage.py seed_demo

## make run: the embedded default (SQLite, in-process worker and beat, paper exchange) on 127.0.0.1:8000
## (RUNPLATFORM_HOST / RUNPLATFORM_PORT change the address)
run: demo
	$(PY) manage.py runplatform

## make test: the whole suite (a second pass on PostgreSQL + Redis when they are reachable)
test: $(DEV_STAMP)
	VENV=$(VENV) bash scripts/test.sh

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -x

## make fuzz: the randomized fault harness with a long budget, new examples every run
## (FAULT_EXAMPLES per venue, default 1000; both venues; tests/faults)
fuzz: $(DEV_STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/faults -k promises_hold_under

bench: $(DEV_STAMP)
	$(PY) -m bench

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var
