# Every target installs what it needs into .venv; nothing else is needed but python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: demo test lint typecheck pytest bench nox clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m autopar demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict src/autopar

pytest: $(VENV)/.installed-test
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py

nox: $(VENV)/.installed-test
	$(BIN)/nox

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .nox
