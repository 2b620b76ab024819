# `make demo` and `make test` do all set-up themselves (scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit clean install uninstall

setup:
	VENV=$(VENV) ./scripts/setup.sh

demo:  # the demo needs only the venv and mosquitto, not the test tools
	VENV=$(VENV) EDGED_SETUP=demo ./scripts/setup.sh
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup  # the fast tier: tests/unit only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# System service: the venv under /opt/edged, the units, the udev rule, /etc/edged/config.yaml.
install:
	DESTDIR=$(DESTDIR) ./scripts/install.sh

uninstall:
	DESTDIR=$(DESTDIR) ./scripts/install.sh --uninstall
