# Two commands work on a fresh machine:
#   make demo   set up a virtual environment and lint the bundled example models
#   make test   set up a virtual environment and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint format clean readme docs

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/build_examples.py examples/models
	$(BIN)/bnlint examples/models --exit-zero

# The browser test drives Debian's chromium (never a downloaded browser build).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache examples/models site

readme: $(STAMP)
	$(BIN)/python -m bnlint.docgen --readme README.md

# The documentation site, offline: regenerate the rule pages from the rule modules, then
# build site/ with mkdocs' built-in theme (nothing is fetched, at build time or in a browser).
docs: $(STAMP)
	$(BIN)/python -m bnlint.docgen --docs docs
	$(BIN)/python -m mkdocs build --strict
