# Two commands work on a fresh machine:
#   make demo   set up a small environment (bnlint, core dependencies) and lint the examples
#   make test   set up a virtual environment and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint format clean readme docs fuzz bench screenshot

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The demo needs bnlint and its core dependencies (onnx, networkx, click, jinja2, numpy),
# not the development stack of `make test` (torch, onnxruntime, peers, test tools).
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

$(DEMO_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q -c constraints.txt -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python examples/build_examples.py examples/models
	$(DEMO_VENV)/bin/bnlint examples/models --exit-zero --report-html examples/report.html

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

# The long fuzz run: 50,000 randomised mutants of ONNX models and PyTorch archives (the test
# suite runs ~240 derandomised ones). FUZZ_SEED picks the run; Hypothesis prints the counts.
FUZZ_EXAMPLES ?= 50000
FUZZ_SEED ?= 0
fuzz: $(STAMP)
	BNLINT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) BNLINT_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python -m pytest \
		tests/test_fuzz.py -k "not real_executable" -p no:cacheprovider \
		--hypothesis-show-statistics $(PYTEST_ARGS)

# bnlint against the cost of reading each model, with peer tools side by side (several
# minutes on 2 cores): rewrites the "Performance and scale" and "Fold and verify" sections
# of BENCHMARKS.md. Models are generated into benchmarks/models/ (git-ignored).
# BENCH_ARGS="--reps 1 --skip-peers --no-write" for a quick look.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/scale.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/fold_compare.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(DEMO_VENV) build dist *.egg-info .pytest_cache .ruff_cache examples/models site

# Refresh docs/img/report.png (the README's picture of the HTML report) from the browser test.
screenshot: $(STAMP) $(CHROMIUM)
	BNLINT_UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest tests/test_browser.py -q -p no:randomly

readme: $(STAMP)
	$(BIN)/python -m bnlint.docgen --readme README.md

# The documentation site, offline: regenerate the rule pages from the rule modules, then
# build site/ with mkdocs' built-in theme (nothing is fetched, at build time or in a browser).
docs: $(STAMP)
	$(BIN)/python -m bnlint.docgen --docs docs
	$(BIN)/python -m mkdocs build --strict
