# The two commands of the README:
#   make run    install, then serve on http://127.0.0.1:8000 (embedded PostgreSQL when
#               DATABASE_URL is unset)
#   make test   install, then lint, type-check and run the tests (embedded PostgreSQL when
#               TEST_DATABASE_URL is unset)
# Everything is installed from the lock file into .venv by uv, which itself is installed
# into .tools/ on first use, so a machine needs only python3 (3.11+) and make.

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
RUN := $(UV) run --frozen --extra embedded

.PHONY: run install test lint typecheck pytest schemathesis test-embedded bench demo clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --extra embedded

run: install
	$(RUN) patron serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

demo: install
	$(RUN) patron demo --migrate

test: install lint typecheck pytest

lint:
	$(RUN) ruff check app tests bench migrations
	$(RUN) ruff format --check app tests bench migrations

typecheck:
	$(RUN) mypy

pytest:
	$(RUN) pytest $(PYTEST_ARGS)

# Schemathesis against a running server (schemathesis.toml): left out of `make pytest` for
# its minute and more; CI runs it as a stage of its own.
schemathesis: install
	$(RUN) pytest -m schemathesis tests/test_schemathesis.py

# The same tests on a throw-away embedded PostgreSQL even when TEST_DATABASE_URL is set.
test-embedded: install
	env -u TEST_DATABASE_URL $(RUN) pytest $(PYTEST_ARGS)

bench: install
	$(RUN) python bench/run.py

clean:
	rm -rf .venv .tools .patron-data .pytest_cache .mypy_cache .ruff_cache
