# lecp: the two set-up commands of the README (`make sandbox`, `make test`) and their helpers.
# Every target is idempotent and works on a fresh Debian machine as root.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.lecp-installed

.PHONY: test unit integration bench bench-deps soak sandbox system-deps test-deps venv clean

test: test-deps venv
	$(PY) -m pytest tests

unit: venv
	$(PY) -m pytest tests --ignore=$(CURDIR)/tests/integration

integration: test-deps venv
	$(PY) -m pytest tests/integration

bench: bench-deps venv
	$(PY) bench/run_all.py

# The peers lecp is compared with: Debian's acme-tiny and uacme, and certbot from PyPI in its own virtualenv.
BENCH_PACKAGES = pebble python3 acme-tiny uacme openssl
CERTBOT = bench/.certbot/bin/certbot

bench-deps:
	$(call apt_install,$(BENCH_PACKAGES))
	test -x $(CERTBOT) || { $(PYTHON) -m venv bench/.certbot && bench/.certbot/bin/pip install -q certbot; }

# The long form of the reliability tests (about an hour, as root): 120 crash trials of the worker
# (12 of the page, 12 of the daemon), 200 issuances at Pebble's defaults, 25 rounds of the page, the
# admin command and the daemon on one account, then 30 minutes of the daemon with 10,000 accounts
# and a slow CA (figures in bench/results/soak_daemon.json). SOAK_SECONDS=N sets the daemon's run.
SOAK_SECONDS ?= 1800
soak: test-deps venv
	LECP_CRASH_TRIALS=120 LECP_CONCURRENCY_ROUNDS=25 LECP_LOAD_ISSUANCES=200 $(PY) -m pytest -s \
	    tests/integration/test_crash.py tests/integration/test_concurrency.py \
	    tests/integration/test_acme_pebble.py -k "killed or together or consecutive"
	$(PY) bench/soak_daemon.py --seconds $(SOAK_SECONDS)

# Debian's pebble package ships both /usr/bin/pebble and /usr/bin/pebble-challtestsrv.
SYSTEM_PACKAGES = pebble python3
# The tests also drive Debian's Chromium through chromedriver, and run workers with Debian's python3.
TEST_PACKAGES = pebble chromium chromium-driver python3

define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing; run this as root so it can apt-get install them" >&2; exit 1; fi; \
	    echo "Installing Debian packages:$$missing ..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

system-deps:
	$(call apt_install,$(SYSTEM_PACKAGES))

test-deps:
	$(call apt_install,$(TEST_PACKAGES))

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

clean:
	rm -rf $(VENV) bench/.certbot build dist *.egg-info _trial_temp .pytest_cache twisted/plugins/dropin.cache

SANDBOX_DIR ?= /var/lib/lecp-sandbox

# The whole system on loopback: Pebble, the emulated cPanel with its page, the daemon (Ctrl-C stops it).
sandbox: system-deps venv
	$(PY) -m lecp.sandbox start --state-dir $(SANDBOX_DIR)
