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

.PHONY: help install weights migrate secret-key demo run test test-postgres services lint bench chromium clean

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

migrate: install secret-key
	DEBUG=1 $(BIN)/python manage.py migrate --noinput

# A random key only this user can read, for `.venv/bin/python manage.py ...` without DEBUG or SECRET_KEY
# (the settings read it when SECRET_KEY is not set; servers set SECRET_KEY: docs/deploy.md).
secret-key: var/secret_key

var/secret_key:
	@mkdir -p var
	@$(PYTHON) -c 'import os, secrets; fd = os.open("$@", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600); \
	  os.write(fd, secrets.token_urlsafe(50).encode()); os.close(fd)'

demo: migrate weights
	DEBUG=1 $(BIN)/python manage.py setup_demo

run: demo
	@echo ""
	@echo "  Light Bulb is starting on http://$(HOST):$(PORT)/  (log in as admin / lightbulb)"
	@echo "  Web server, django-q2 workers (the model loop, and fine-tuning at a low CPU priority) and inference"
	@echo "  worker (/score) run together; Ctrl-C stops them all."
	@echo ""
	@# The worker runs in its own session, restarted if it dies (re-enqueueing first what it left
	@# undone; processes a killed qcluster left behind are removed with its process group). Stopping
	@# goes through the loop: TERM to the worker's main process alone (`manage.py worker`, django-q2's
	@# qcluster that asks the running task to stop at its next batch), which stops its own processes.
	@# The deep worker serves the fine-tuning queue (LIGHTBULB_DEEP_CLUSTER) at nice 19 (it also sets itself
	@# SCHED_IDLE, modeling/priority.py), so the model loop's training after each label gets the cores first.
	@setsid bash -c 'trap "kill -TERM \$$q 2>/dev/null; wait \$$q; exit 0" TERM; \
	  while :; do \
	    DEBUG=1 $(BIN)/python manage.py resume_model_work; \
	    DEBUG=1 setsid $(BIN)/python manage.py worker & q=$$!; wait $$q; code=$$?; \
	    kill -9 -- -$$q 2>/dev/null; \
	    echo "  worker stopped (exit $$code); restarting it in 2 s"; sleep 2; \
	  done' & worker=$$!; \
	setsid bash -c 'trap "kill -TERM \$$d 2>/dev/null; wait \$$d; exit 0" TERM; \
	  while :; do \
	    DEBUG=1 Q_CLUSTER_NAME=lightbulb-deep setsid nice -n 19 $(BIN)/python manage.py worker & d=$$!; wait $$d; \
	    code=$$?; kill -9 -- -$$d 2>/dev/null; \
	    echo "  deep worker stopped (exit $$code); restarting it in 2 s"; sleep 2; \
	  done' & deep=$$!; \
	setsid bash -c 'trap "kill -TERM \$$i 2>/dev/null; wait \$$i; exit 0" TERM; \
	  while :; do \
	    DEBUG=1 $(BIN)/python manage.py inference_worker & i=$$!; wait $$i; code=$$?; \
	    echo "  inference worker stopped (exit $$code); restarting it in 2 s"; sleep 2; \
	  done' & inference=$$!; \
	DEBUG=1 $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT) & web=$$!; \
	trap 'kill $$worker $$deep $$inference $$web 2>/dev/null; wait' INT TERM; \
	wait $$web; kill $$worker $$deep $$inference 2>/dev/null; wait

# Debian's Chromium for the browser tests (never `playwright install`: no browser downloads here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version

# PostgreSQL and Redis on loopback for the tests that must also hold on a production stack: Debian's
# packages (installed once), a cluster and a `lightbulb` role that may create the test database, and a
# throwaway Redis (no persistence). Each step checks first, so running it again changes nothing.
PG_TEST_URL    ?= postgres://lightbulb:lightbulb@127.0.0.1:5432/lightbulb
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
services:
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	AS_PG=$$( [ "$$(id -u)" = 0 ] && echo "runuser -u postgres --" || echo "sudo -u postgres" ); \
	if ! command -v pg_ctlcluster >/dev/null || ! command -v redis-server >/dev/null; then \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; \
	fi; \
	ver=$$(ls /usr/lib/postgresql | sort -n | tail -1); \
	pg_lsclusters -h | grep -q "^$$ver main " || $$SUDO pg_createcluster $$ver main >/dev/null; \
	pg_lsclusters -h | grep "^$$ver main " | grep -q online || $$SUDO pg_ctlcluster $$ver main start; \
	for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done; \
	$$AS_PG psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname = 'lightbulb'" | grep -q 1 || \
		$$AS_PG psql -qc "CREATE ROLE lightbulb LOGIN CREATEDB PASSWORD 'lightbulb'"; \
	$$AS_PG psql -qtAc "SELECT 1 FROM pg_database WHERE datname = 'lightbulb'" | grep -q 1 || \
		$$AS_PG createdb -O lightbulb lightbulb; \
	redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
		redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no >/dev/null; \
	for i in $$(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done; \
	echo "PostgreSQL $$ver and Redis $$(redis-server --version | grep -o 'v=[0-9.]*') on 127.0.0.1"

# The database, lease, concurrency and task tests again on PostgreSQL with the Redis broker (and, in
# tests/test_workers.py, two qcluster processes); the browser tests stay on the SQLite run.
PG_TESTS := tests/labeling tests/projects tests/interchange tests/test_authorization_matrix.py \
	tests/test_bad_input.py tests/test_security.py tests/test_workers.py tests/modeling/test_recovery.py \
	tests/modeling/test_proposals_loop.py tests/modeling/test_training.py tests/modeling/test_auto_labels.py \
	tests/modeling/test_review.py
test-postgres: install weights services
	DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) $(BIN)/python -m pytest -m "not browser" $(PG_TESTS)

# The settings refuse to start without a secret outside DEBUG; mypy's Django plugin loads them.
lint: install
	$(BIN)/ruff check .
	LIGHTBULB_INSECURE_DEV_KEY=1 $(BIN)/mypy

test: lint weights chromium services
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-postgres

# Benchmarks run in a throwaway database and data folder; each rewrites its measured block of
# docs/benchmarks.md (the prose around the blocks stays) and keeps the raw numbers in docs/bench/*.json.
# Plotting is for the benchmarks only, so it stays out of requirements.txt.
$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: install weights services $(VENV)/.bench-installed
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	export DEBUG=1 DATABASE_URL="sqlite:///$$tmp/bench.sqlite3" LIGHTBULB_DATA_ROOT="$$tmp" LIGHTBULB_Q_SYNC=1 \
	  LIGHTBULB_FINETUNE_AUTO=0; \
	$(BIN)/python manage.py migrate --noinput -v 0 && \
	mkdir -p docs/bench && $(BIN)/python manage.py bench_model --out docs/bench/model.json --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_score --out docs/bench/score.json --doc docs/benchmarks.md && \
	REDIS_URL=$(REDIS_TEST_URL) $(BIN)/python manage.py bench_load --kill --postgres-url $(PG_TEST_URL) \
		--out docs/bench/load.json --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_team --out docs/bench --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_simulate --out docs/bench --doc docs/benchmarks.md $(BENCH_ARGS) && \
	$(BIN)/python manage.py bench_label_check --seeds 3 --out docs/bench --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_finetune --labels 200,500,all --resume --out docs/bench --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_sequence --seeds 3 --entropy --resume --out docs/bench --doc docs/benchmarks.md && \
	$(BIN)/python manage.py bench_detection --resume --out docs/bench --doc docs/benchmarks.md

clean:
	rm -rf $(VENV) .cache staticfiles .pytest_cache
