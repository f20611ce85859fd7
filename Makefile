# Two commands do all set-up: `make run` and `make test` (README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 9380
export PORT

.PHONY: run test lint install install-dev migrate bench bench-prod clean

$(VENV)/.installed-runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-runtime requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed-runtime
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py collectstatic --noinput -v 0

run: migrate
	$(PY) manage.py serve --port $(PORT)

lint: install-dev
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) tests/production_suite.py $(PYTEST_ARGS)

bench: install-dev
	$(PY) bench/run.py $(BENCH_ARGS)

bench-prod: install-dev
	$(PY) bench/run.py --backend postgres --processes 2 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
