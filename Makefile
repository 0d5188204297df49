# The two commands of the README's Quick start. Each installs what it needs first.
VENV := .venv/bin

.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/obuilder check examples/*.spec
	$(VENV)/obuilder fmt --check examples/*.spec

test: setup
	./scripts/test.sh

lint: setup
	$(VENV)/ruff check .
