# Set-up and entry points. `make run` and `make test` are the two commands of README.md.
VENV ?= .venv
BIN := $(VENV)/bin
# The Dagster instance (runs, lineage, data versions, pool limits) that `make run` and `make ui` share: this
# folder's, whatever the shell exports (a team's DAGSTER_HOME is not for local runs); `make ui DAGSTER_HOME=...`
# chooses another.
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Extra pip arguments for torch alone, e.g. PyTorch's CPU wheel index on a machine without a GPU (README.md).
TORCH_PIP_ARGS ?=

.PHONY: install run test ui bench

# torch first, so that TORCH_PIP_ARGS chooses its build before the project's pin is resolved.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_PIP_ARGS) torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,mlflow,small,celery,bench]'
	touch $@

install: $(VENV)/.installed

# The project's local instance settings, kept up to date in .dagster_home; another folder's own file is left alone.
$(DAGSTER_HOME)/dagster.yaml: deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	@if [ -e $@ ] && [ "$(DAGSTER_HOME)" != "$(CURDIR)/.dagster_home" ]; then \
		echo "keeping $@ (not this project's .dagster_home; deploy/local/dagster.yaml is the local one)"; \
	else cp $< $@; fi

# A run killed earlier (SIGKILL, OOM, power cut) is marked failed first, so it frees its pool slot.
# Every step in one process (deploy/local/retrain_all.yaml): no process start-up per step.
run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m ohlora_assets.run_launcher
	$(BIN)/dg launch --job retrain_all -c deploy/local/retrain_all.yaml

test: install
	$(BIN)/pytest

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev -h 127.0.0.1

# A missed target is printed in the table, not an error: this fails only when a benchmark could not run.
bench: install
	$(BIN)/ohlora bench all
