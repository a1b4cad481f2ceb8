# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck engines system-deps venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,tokenizer]'
	touch $(STAMP)

venv: $(STAMP)

## system packages the tests drive: headless Chromium (the report) and Prometheus (traffic evidence)
system-deps:
	@command -v chromium >/dev/null && command -v prometheus >/dev/null || \
	  { command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium prometheus >/dev/null; } || \
	  echo "warning: could not install chromium/prometheus; their tests will skip"

## the real engines the tests start (llama-server, vLLM on CPU, infinity) and the tiny model they serve;
## cached under ~/.cache/servewise-engines, built only when missing
engines:
	bash tests/engines/install.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks

## mypy over src/servewise, configured in pyproject.toml ([tool.mypy])
typecheck: venv
	$(BIN)/mypy

test: venv system-deps engines lint typecheck
	$(BIN)/pytest

demo: venv
	$(BIN)/servewise demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
