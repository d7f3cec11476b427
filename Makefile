# Trading-research workbench. `make` lists the targets; `make run` and `make test` are the two commands.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

help: ## list the targets (colours only on a terminal)
	@if [ -t 1 ]; then c='\033[36m'; r='\033[0m'; else c=''; r=''; fi; \
	grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -v c="$$c" -v r="$$r" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-10s%s %s\n", c, $$1, r, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet $(TORCH_PIN)   # the local CPU wheel first: nothing pulls CUDA afterwards
	$(PY) -m pip install --quiet -e ".[all]"
	# imitation 1.0.1 (AIRL, notebook 09's inverse-RL peer) pins gymnasium~=0.29 and stable-baselines3~=2.2.1; the parts
	# used run on gymnasium 1.x / stable-baselines3 2.x (tests/test_rules_irl.py), so it goes in without its pins
	$(PY) -m pip install --quiet --no-deps "imitation==1.0.1"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the package with every extra (idempotent)

data: venv ## generate the default simulated data if absent (30 days, seed 7)
	$(PY) -m workbench simulate --profile default --if-absent --quiet

run: venv data ## run the whole notebook chain on the default data (executed copies under runs/)
	$(PY) -m workbench run --profile default

smoke: venv ## run the chain on smoke parameters (minutes; writes only under runs/)
	$(PY) -m workbench run --profile smoke

test: venv ## run the test suite (includes a smoke run of the chain)
	$(PY) -m pytest

lab: venv ## open JupyterLab on the notebooks (each .ipynb is paired with its .py script)
	$(VENV)/bin/jupyter lab notebooks/

bench: venv ## run the benchmarks (timings and speed ratios)
	@for b in benchmarks/*.py; do echo "== $$b"; WORKBENCH_PROGRESS=0 $(PY) $$b || exit 1; done

clean: ## remove generated runs, figures and processed data (keeps data/raw and .venv)
	rm -rf runs figures/*.png figures/*.html figures/*.js data/interim data/processed models

.PHONY: help venv data run smoke test bench lab clean
