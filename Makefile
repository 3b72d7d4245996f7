# townhall — two commands do all the set-up on a fresh Debian 12 machine:
#   make demo   embedded server + a live space with two synthetic speakers (no services)
#   make test   installs what the tests need (venv, Debian packages, npm, Chromium), runs them
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_STAMP := .apt-installed
# Debian packages the tests drive as real peers: ffmpeg reads our HLS, redis-server and
# varnish/nginx run as real services, chromium plays our pages.
APT_TEST_PACKAGES := ffmpeg redis-server varnish varnish-vmod-digest nginx-light chromium sox \
	fonts-noto-color-emoji
# benchmarks only: Icecast 2.4, the classic one-to-many server we compare against
APT_BENCH_PACKAGES := icecast2
# hls.js from the npm registry (pinned in web/package-lock.json), copied into the static files
VENDOR_STAMP := src/townhall/web/static/vendor/hls.min.mjs
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest bench venv system-deps web clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP)

$(VENDOR_STAMP): web/package.json web/package-lock.json web/build.sh
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	bash web/build.sh
	@touch $@

web: $(VENDOR_STAMP)

system-deps:
	@missing=""; for p in $(APT_TEST_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# the packaged services must not hold their default ports; tests start their own
	@-systemctl disable --now redis-server varnish nginx >/dev/null 2>&1 || true
	@-pkill -x redis-server >/dev/null 2>&1 || true

demo: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/townhall demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps $(VENDOR_STAMP)
	$(BIN)/pytest -q

test: $(STAMP) system-deps lint typecheck pytest

bench: $(STAMP) system-deps $(VENDOR_STAMP)
	@dpkg -s $(APT_BENCH_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_BENCH_PACKAGES) >/dev/null; }
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
