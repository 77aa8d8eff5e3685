# One virtual environment in .venv, made from pyproject.toml: `make run` (the main job) and `make test` need nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## the main job: laptop-scale reproduction, report in runs/demo
	$(BIN)/mosaic demo --out runs/demo

test: $(STAMP)  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## CPU benchmarks (minutes); JSON on stdout
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/streaming.py

clean:
	rm -rf $(VENV) runs build *.egg-info
