# Two commands: `make book` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SCALE  ?= book

.PHONY: book run html test bench sync clean help

help:
	@echo "make book   execute every notebook at book scale (papermill) and build the HTML book"
	@echo "make test   run the whole test suite (library, notebooks at smoke scale with nbval, book build)"
	@echo "make bench  run the speed benchmarks in benchmarks/"
	@echo "make run SCALE=smoke|book|paper   execute the notebooks only"
	@echo "make sync   rewrite notebooks/scripts/*.py (the notebooks' code as percent scripts, for linters)"

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# A failed notebook still gets its page (saying where it failed and how to re-run it), so the book
# is built even then; `make book` exits non-zero at the end when a notebook failed.
book: $(VENV)/.installed
	status=0; $(PY) -m gradprobe.book run --scale $(SCALE) || status=$$?; \
	$(PY) -m gradprobe.book build && exit $$status

run: $(VENV)/.installed
	$(PY) -m gradprobe.book run --scale $(SCALE)

html: $(VENV)/.installed
	$(PY) -m gradprobe.book build

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# notebooks/scripts/<notebook>.py: each notebook's code as a percent script (jupytext.toml pairs
# them), so that ruff and duplicate finders see it; tests/test_sources.py checks they are in sync.
sync: $(VENV)/.installed
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

clean:
	rm -rf executed _build
