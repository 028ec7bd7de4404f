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

# The test files run side by side on the machine's cores (pytest-xdist; a file's tests stay on one worker, so
# its module fixtures are built once); the slowest 25 are listed at the end. PYTEST_ARGS="-n 0" runs serially.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile --durations 25

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

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
