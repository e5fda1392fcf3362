# Two commands: `make book` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SCALE  ?= book

.PHONY: book run html test bench clean help

help:
	@echo "make book   execute every notebook at book scale (papermill) and build the HTML book"
	@echo "make test   run the whole test suite (library, notebooks at smoke scale with nbval, book build)"
	@echo "make bench  run the speed benchmarks in benchmarks/"
	@echo "make run SCALE=smoke|book|paper   execute the notebooks only"

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

book: $(VENV)/.installed
	$(PY) -m gradprobe.book run --scale $(SCALE)
	$(PY) -m gradprobe.book build

run: $(VENV)/.installed
	$(PY) -m gradprobe.book run --scale $(SCALE)

html: $(VENV)/.installed
	$(PY) -m gradprobe.book build

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf executed _build
