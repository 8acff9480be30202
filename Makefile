# Two entry points: `make demo` and `make test` (`make test-fast`: without the slow outcome tests). Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast venv bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/modellock demo --out demo-output

# one process per core (pytest-xdist), one torch thread each: tiny models train fastest that way
test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist loadfile

# the same without the outcome tests (marked slow: locks trained for several epochs, then attacked)
test-fast: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist loadfile -m "not slow"

clean:
	rm -rf demo-output .pytest_cache
