# Every target installs what it needs into .venv; nothing else is needed but python3 and make.
# test-3.14 and test-3.15 take those interpreters from Debian unstable: scripts/debian-pythons.sh
# builds (once) a chroot outside the checkout with them and their venvs; it needs root on a Debian host.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: demo test lint typecheck pytest bench nox nox-others clean test-3.14 test-3.15 test-all

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e .
	$(BYTECODE)
	touch $@

# An editable install compiles no bytecode, and where PYTHONDONTWRITEBYTECODE is set no import writes
# any: every interpreter (each spawn worker included) would compile autopar from source, 30-60 ms.
# A regular pip install compiles at install time; this does the same for src/ (ignored by git).
BYTECODE = $(PY) -m compileall -q src > /dev/null

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@

demo: $(VENV)/.installed
	$(BYTECODE)
	$(PY) -m autopar demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict src/autopar

# With AUTOPAR_RERUN_FAILED set (CI), a test that failed runs once more, alone, and decides the
# outcome, as on the other Pythons; the first failure stays in the log.
pytest: $(VENV)/.installed-test
	$(BYTECODE)
	if [ -z "$$AUTOPAR_RERUN_FAILED" ]; then $(PY) -m pytest; \
	else $(PY) -m pytest || { echo "rerunning the tests that failed, once"; \
	  $(PY) -m pytest --last-failed --last-failed-no-failures=none; }; fi

test: lint typecheck pytest

bench: $(VENV)/.installed-bench
	$(BYTECODE)
	$(PY) benchmarks/run.py

nox: $(VENV)/.installed-test
	$(BIN)/nox

# The pyenv Pythons other than the default one, which `make test` covers (CI runs both).
nox-others: $(VENV)/.installed-test
	$(BIN)/nox -s tests-3.10 tests-3.12 tests-3.13

# Extra pytest arguments for the chroot runs, e.g. make test-3.15 PYTEST_ARGS="-k executor".
PYTEST_ARGS ?=

test-3.14 test-3.15: test-%:
	scripts/debian-pythons.sh test $* $(PYTEST_ARGS)

# CPython 3.10 to 3.13 through nox, then 3.14 and 3.15 in the chroot.
test-all: nox test-3.14 test-3.15

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .nox
