# Every target sets up .venv first (a no-op once it is in place).
PY := .venv/bin/python

.PHONY: setup train test test-all data view lint format bench clean

setup:
	@bash setup.sh

train: setup  ## generate the default dataset if needed, then train the default experiment
	$(PY) src/train.py

data: setup  ## generate the default dataset into data/
	$(PY) generate_vimh.py

view: setup  ## render a grid of the default dataset (and a few WAVs when audio is stored)
	$(PY) scripts/view_vimh.py

test: setup  ## the default test suite (what CI runs)
	$(PY) -m pytest -q

test-all: setup  ## include slow tests
	$(PY) -m pytest -q -m ""

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench: setup
	$(PY) scripts/bench_generate.py --markdown docs/performance.md
	$(PY) scripts/bench_loading.py --markdown docs/performance.md
	$(PY) scripts/bench_train.py --markdown docs/performance.md

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis
