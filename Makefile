# Every target sets up .venv first (a no-op once it is in place).
PY := .venv/bin/python

.PHONY: setup train test test-all data view lint format bench clean
.PHONY: app browser test-browser

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

browser:  ## Chromium and its driver for the browser test (apt-get as root; a no-op when present)
	@bash scripts/install_browser.sh

test-browser: setup browser  ## the demo page driven in headless Chromium (what CI runs too)
	NSM_REQUIRE_BROWSER=1 $(PY) -m pytest -q -m slow -k browser

app: setup  ## the demo page on the newest checkpoint under logs/ (http://127.0.0.1:7860)
	$(PY) src/app.py

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
	$(PY) scripts/bench_render.py --markdown docs/performance.md
	$(PY) scripts/bench_loading.py --markdown docs/performance.md
	$(PY) scripts/bench_train.py --compile --markdown docs/performance.md

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis
