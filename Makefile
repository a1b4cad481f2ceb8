# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck engines system-deps venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,tokenizer,postgres,ray]'
	touch $(STAMP)

venv: $(STAMP)

## system packages the tests drive: headless Chromium (the report), Prometheus (traffic evidence), PostgreSQL
## (the shared run store: the tests start their own server, the package's cluster is not left running), and for the
## "remote host" tests (tests/remote_host.py) node_exporter, iproute2 (ip netns, tc) and iptables (a link delay
## where the kernel has no netem). node_exporter's own service is not left running: the tests start the binary.
system-deps:
	@pkgs=""; \
	command -v chromium >/dev/null || pkgs="$$pkgs chromium"; \
	command -v prometheus >/dev/null || pkgs="$$pkgs prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || pkgs="$$pkgs postgresql"; \
	test -x /usr/bin/prometheus-node-exporter || pkgs="$$pkgs prometheus-node-exporter"; \
	command -v ip >/dev/null || pkgs="$$pkgs iproute2"; \
	command -v iptables >/dev/null || pkgs="$$pkgs iptables"; \
	[ -z "$$pkgs" ] || \
	  { command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null && \
	    { case "$$pkgs" in *prometheus-node-exporter*) [ ! -d /run/systemd/system ] || \
	        systemctl disable --now prometheus-node-exporter >/dev/null 2>&1;; esac; true; } && \
	    { case "$$pkgs" in *postgresql*) [ ! -d /run/systemd/system ] || \
	        systemctl disable --now postgresql >/dev/null 2>&1;; esac; true; }; } || \
	  echo "warning: could not install$$pkgs; their tests will skip"

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
