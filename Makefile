# Set-up is automatic: every target below creates .venv and installs the
# pinned requirements the first time, and again whenever they change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
DEVICE ?= auto
SEED ?= 0
JOBS ?= 1

.PHONY: book run html test browser lab lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23.2"

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	# recbole is read for the MovieLens-100K files it ships; its own dependencies are not needed.
	$(BIN)/python -m pip install --no-deps recbole==1.2.1
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

## book: execute every chapter once, check its claims, render _build/html
book: run html

run: $(VENV)/.installed
	$(BIN)/negsamp run --profile $(PROFILE) --device $(DEVICE) --seed $(SEED) --jobs $(JOBS)

html: $(VENV)/.installed
	$(BIN)/negsamp build

## test: library and runner tests, every chapter at the quick profile with seeds
## $(TEST_SEEDS), the claim audit, the HTML build, and the pages read in Chromium
TEST_SEEDS ?= 0,1,2
test: $(VENV)/.installed browser
	NEGSAMP_TEST_SEEDS=$(TEST_SEEDS) $(BIN)/python -m pytest

## browser: install Debian's Chromium for the page tests, where apt-get runs as root
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }; \
	else echo "Chromium not found and cannot be installed here; the page tests will be skipped"; fi

## lab: open the chapters as notebooks in JupyterLab (jupytext pairs the MyST files)
lab: $(VENV)/.installed
	$(BIN)/jupyter lab chapters/

## lock: re-pin requirements.txt from requirements.in in a scratch environment
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -r requirements.in
	{ sed -n '1,2p' requirements.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > requirements.txt.new
	mv requirements.txt.new requirements.txt && rm -rf .venv-lock

clean:
	rm -rf _build
