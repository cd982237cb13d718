# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast bench lint venv migrate demo clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py seed_demo

## make run: the embedded default (SQLite, in-process worker and beat, paper exchange) on 127.0.0.1:8000
run: demo
	$(PY) manage.py runplatform

## make test: the whole suite (a second pass on PostgreSQL + Redis when they are reachable)
test: $(STAMP)
	VENV=$(VENV) bash scripts/test.sh

test-fast: $(STAMP)
	$(PY) -m pytest -q -x

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var
