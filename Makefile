# Two commands a new user needs:  make demo  (seed + train week 1 on the embedded defaults)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.packwise-installed

.PHONY: install demo test lint constraints compile bench images docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/packwise seed
	$(BIN)/packwise train --week 1

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

compile: install
	$(BIN)/packwise compile --out build

bench: install
	$(BIN)/python bench/bench_training.py

constraints: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^packwise' > constraints.txt.new
	( sed -n '1,2p' constraints.txt; cat constraints.txt.new ) > constraints.txt.tmp && rm constraints.txt.new
	mv constraints.txt.tmp constraints.txt

docs: install
	$(BIN)/python scripts/update_readme_config.py

images:
	bash images/build-local-base.sh && bash images/build-all.sh

clean:
	rm -rf .packwise build
