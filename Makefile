# dxlmispservice: every set-up step lives here, so that a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
MOSQUITTO := $(shell command -v mosquitto 2>/dev/null || ls /usr/sbin/mosquitto 2>/dev/null)

.PHONY: all venv mosquitto test unit e2e demo docs bench clean up

all: test

# --- set-up -----------------------------------------------------------------------------------
$(STAMP): requirements.txt setup.py devstack/setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e . -e ./devstack
	touch $(STAMP)

venv: $(STAMP)

# mosquitto is the dev fabric's MQTT broker: install the Debian package when it is missing and we are root.
mosquitto:
	@if [ -z "$(MOSQUITTO)" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing mosquitto"; \
	    (apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends mosquitto) >/dev/null; \
	  else echo "mosquitto is missing: install the Debian package 'mosquitto' (needs root)"; exit 1; fi; \
	fi

# --- the two commands in the README -----------------------------------------------------------
test: venv mosquitto
	$(PY) -m pytest -q tests
	$(MAKE) docs

demo: venv mosquitto
	$(PY) -m dxlmisp_devstack demo

# --- the rest ---------------------------------------------------------------------------------
unit: venv
	$(PY) -m pytest -q tests --ignore=tests/e2e

e2e: venv mosquitto
	$(PY) -m pytest -q tests/e2e

up: venv mosquitto
	$(PY) -m dxlmisp_devstack up --workdir .devstack

docs: venv
	$(VENV)/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html

bench: venv mosquitto
	$(PY) -m bench

clean:
	rm -rf $(VENV) docs/_build bench/out .devstack *.egg-info devstack/*.egg-info build devstack/build
