# The README's two commands. Each runs scripts/setup.sh first, which creates
# .venv when missing and installs what is needed (idempotent, cheap when done).
.PHONY: setup demo test lint typecheck unit

VENV := .venv
BIN := $(VENV)/bin

setup:
	bash scripts/setup.sh

# The main job: pose_env collect -> train -> export -> evaluate, into demo_out/
# (replacing the previous demo's output, which the marker file identifies).
demo: setup
	$(BIN)/t2r demo --overwrite

# Lint, format check, type check, then the test suite.
test: setup
	$(MAKE) --no-print-directory lint typecheck unit

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/python -m pytest
