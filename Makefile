# `make demo` and `make test` do all set-up themselves (scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean install uninstall

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

# System service: the venv under /opt/edged, the units, the udev rule, /etc/edged/config.yaml.
install:
	DESTDIR=$(DESTDIR) ./scripts/install.sh

uninstall:
	DESTDIR=$(DESTDIR) ./scripts/install.sh --uninstall
