# Light Bulb: `make run` (set up everything, then serve) and `make test` (the whole suite).
# Every target is idempotent and quick when its work is already done.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

# Weights live inside the checkout and never download at run time.
export TORCH_HOME     := $(CURDIR)/.cache/torch
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install weights migrate demo run test lint bench chromium clean

help:
	@echo "make run    set up (venv, weights, database, demo) and serve on http://$(HOST):$(PORT)"
	@echo "make test   run the whole test suite (lint and types first)"
	@echo "make lint   ruff (lint, import order) and mypy (types) alone"
	@echo "make bench  measure the model loop on ../shared/datasets (results: docs/benchmarks.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs only when requirements.txt changes.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

weights: install
	DEBUG=1 $(BIN)/python manage.py provision_weights

migrate: install
	DEBUG=1 $(BIN)/python manage.py migrate --noinput

demo: migrate weights
	DEBUG=1 $(BIN)/python manage.py setup_demo

run: demo
	@echo ""
	@echo "  Light Bulb is starting on http://$(HOST):$(PORT)/  (log in as admin / lightbulb)"
	@echo "  Web server, django-q2 worker and inference worker (/score) run together; Ctrl-C stops all three."
	@echo ""
	@# The worker runs in its own session, restarted if it dies (re-enqueueing first what it left
	@# undone; processes a killed qcluster left behind are removed with its process group). Stopping
	@# goes through the loop: TERM to the qcluster main process alone, which stops its own workers
	@# cleanly (signalling them all at once leaves qcluster hanging).
	@setsid bash -c 'trap "kill -TERM \$$q 2>/dev/null; wait \$$q; exit 0" TERM; \
	  while :; do \
	    DEBUG=1 $(BIN)/python manage.py resume_model_work; \
	    DEBUG=1 setsid $(BIN)/python manage.py qcluster & q=$$!; wait $$q; code=$$?; \
	    kill -9 -- -$$q 2>/dev/null; \
	    echo "  worker stopped (exit $$code); restarting it in 2 s"; sleep 2; \
	  done' & worker=$$!; \
	setsid bash -c 'trap "kill -TERM \$$i 2>/dev/null; wait \$$i; exit 0" TERM; \
	  while :; do \
	    DEBUG=1 $(BIN)/python manage.py inference_worker & i=$$!; wait $$i; code=$$?; \
	    echo "  inference worker stopped (exit $$code); restarting it in 2 s"; sleep 2; \
	  done' & inference=$$!; \
	DEBUG=1 $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT) & web=$$!; \
	trap 'kill $$worker $$inference $$web 2>/dev/null; wait' INT TERM; \
	wait $$web; kill $$worker $$inference 2>/dev/null; wait

# Debian's Chromium for the browser tests (never `playwright install`: no browser downloads here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version

# The settings refuse to start without a secret outside DEBUG; mypy's Django plugin loads them.
lint: install
	$(BIN)/ruff check .
	LIGHTBULB_INSECURE_DEV_KEY=1 $(BIN)/mypy

test: lint weights chromium
	$(BIN)/python -m pytest

# Benchmarks run in a throwaway database and data folder; each rewrites its measured block of
# docs/benchmarks.md (the prose around the blocks stays) and keeps the raw numbers in docs/bench/*.json.
# Plotting is for the benchmarks only, so it stays out of requirements.txt.
$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: install weights $(VENV)/.bench-installed
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	export DEBUG=1 DATABASE_URL="sqlite:///$$tmp/bench.sqlite3" LIGHTBULB_DATA_ROOT="$$tmp" LIGHTBULB_Q_SYNC=1; \
	$(BIN)/python manage.py migrate --noinput -v 0 && \
	mkdir -p docs/bench && $(BIN)/python manage.py bench_model --out docs/bench/model.json --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_score --out docs/bench/score.json --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_simulate --out docs/bench --doc docs/benchmarks.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache staticfiles .pytest_cache
