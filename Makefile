# The two commands for a fresh machine: `make demo` (main job on the embedded default) and `make test`.
# Both create the environment first (idempotent: a stamp file skips it when nothing changed).
PY := .venv/bin/python
# the data kit: $AFFECTLLM_DATA when set (as everywhere else in affectllm), else ../shared/data
DATA ?= $(or $(AFFECTLLM_DATA),$(abspath ../shared/data))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_VERBOSITY := error

.PHONY: env demo test test-slow bench

env:
	@bash scripts/setup_env.sh
	@bash scripts/setup_vllm_env.sh

demo: env
	@bash scripts/demo.sh "$(DATA)"

test: env
	$(PY) -m pytest -q --timeout 600

test-slow: env
	$(PY) -m pytest -q -m slow --timeout 1800
