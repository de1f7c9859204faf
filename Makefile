# Two commands from a fresh clone (Python 3.11+):  `make demo`  and  `make test`  (README.md's quickstart).
# `python3` must be 3.11+, or name one: `make PYTHON=python3.12 test`; Debian needs python3-venv; `make test` ~2 GB RAM.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint run socket check-config demo docs bench clean

$(VENV)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .

# The whole suite, tests/test_wheel.py included: it builds the wheel and installs it (not editable) into a fresh
# venv outside the checkout, so a module or data file missing from `pip install .` fails here.
test: lint
	$(PY) -m pytest

# HTTP mode on $PORT (default 3000); needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.
run: setup
	$(VENV)/bin/amibot serve --port $${PORT:-3000}

socket: setup
	$(VENV)/bin/amibot socket

check-config: setup
	$(VENV)/bin/amibot check-config

# A local playground: the real app, a fake Slack, AWS in moto; no credentials, nothing leaves the machine.
demo: setup
	$(VENV)/bin/amibot demo

# docs/commands.md, docs/configuration.md and the README's summary tables, generated from the code
# (tests/test_docs.py fails when the committed ones differ).
docs: setup
	$(VENV)/bin/amibot docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build dist
