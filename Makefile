# The README's two commands: `make run` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rlx-installed

.PHONY: run test test-slow bench docs lock clean-env

$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## Create the environment from the lock, train PPO on CartPole with 8 seeds, write a learning-curve PNG.
run: $(STAMP)
	$(BIN)/rlx train ppo --env gymnax/CartPole-v1 --seeds 8 --out runs/quickstart-$$(date +%Y%m%d-%H%M%S)

## The default test suite (slow learning checks excluded), on two pytest-xdist workers.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

## The slow learning checks (minutes to tens of minutes on 2 cores).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

PUREJAXRL ?= $(PUREJAXRL_DIR)
## Benchmarks against peers in the same run; rejax is installed without its pinned deps.
## PUREJAXRL=DIR (default $$PUREJAXRL_DIR): a PureJaxRL checkout to compare with; skipped without one.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps rejax==0.1.3
	PUREJAXRL_DIR="$(PUREJAXRL)" $(BIN)/python benchmarks/run_all.py

## The docs site (guides and the API reference from the docstrings) in build/site; warnings are errors.
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir build/site

## Re-resolve the lock from pyproject.toml (jax pinned to 0.9.2, flax to 0.12.6).
lock:
	rm -rf /tmp/rlx-lock && $(PY) -m venv /tmp/rlx-lock
	/tmp/rlx-lock/bin/pip install --quiet "jax==0.9.2" "jaxlib==0.9.2" "flax==0.12.6" -e ".[test]"
	{ head -2 requirements.lock; /tmp/rlx-lock/bin/pip freeze --all --exclude-editable | grep -v "^rlx\|^pip=="; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-env:
	rm -rf $(VENV)
