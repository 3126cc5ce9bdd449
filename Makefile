# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when it
# is missing and install the project into it (editable, with the dev extras for tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest schema-snapshot clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bitloot demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check bitloot tests
	$(BIN)/ruff format --check bitloot tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict bitloot

pytest: $(STAMP)
	./scripts/install-test-packages.sh
	$(BIN)/pytest -n 2

# Regenerate sql/schema.snapshot.sql from a scratch database migrated from nothing.
schema-snapshot: $(STAMP)
	$(BIN)/python -m bitloot.db.snapshot

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
