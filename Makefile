# `make demo` and `make test` do all set-up themselves (scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean

setup:
	VENV=$(VENV) ./scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check edged tests scripts || true

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
