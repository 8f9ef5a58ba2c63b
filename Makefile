# Set-up and entry points. `make run` and `make test` are the two commands of README.md.
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install run test ui bench

# torch first, pinned to the CPU build, so the project's torch pin never pulls CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster job execute -m ohlora_assets.definitions -j retrain_all

test: install
	$(BIN)/pytest

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1

bench: install
	$(BIN)/ohlora bench all
