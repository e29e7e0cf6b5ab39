# lecp: the two set-up commands of the README (`make sandbox`, `make test`) and their helpers.
# Every target is idempotent and works on a fresh Debian machine as root.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.lecp-installed

.PHONY: test unit integration bench sandbox system-deps venv clean

test: system-deps venv
	$(PY) -m pytest tests

unit: venv
	$(PY) -m pytest tests --ignore=tests/integration

integration: system-deps venv
	$(PY) -m pytest tests/integration

bench: system-deps venv
	$(PY) bench/run_all.py

# Debian's pebble package ships both /usr/bin/pebble and /usr/bin/pebble-challtestsrv.
system-deps:
	@if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then \
	    if [ "$$(id -u)" != 0 ]; then echo "pebble is missing: run 'make test' as root so it can apt-get install pebble" >&2; exit 1; fi; \
	    echo "Installing Debian's pebble (ACME test server) ..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq pebble >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp .pytest_cache twisted/plugins/dropin.cache

SANDBOX_DIR ?= .sandbox

# What exists so far: Pebble (with its mock DNS) and a webroot server on Pebble's HTTP-01 port.
sandbox: system-deps venv
	$(PY) -m lecp.testing.pebble run --state-dir $(SANDBOX_DIR) --webroot $(SANDBOX_DIR)/webroot
