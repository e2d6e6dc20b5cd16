# Two commands do all set-up on a fresh Debian/Ubuntu machine:
#   make run    installs everything, then streams live on the shipped model (Ctrl-C stops)
#   make test   installs everything, then runs the test suite (make test-all adds the slow tests)
# Both are idempotent: a second run checks, finds everything in place, and goes straight on.

VENV ?= .venv
PYTHON ?= python3
# fluid-soundfont-gm: the default piano (FluidR3 GM; `python -m bench.soundfonts` compares it)
APT_PACKAGES = libfluidsynth3 fluidsynth jackd2 python3-venv fluid-soundfont-gm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP = $(VENV)/.cadenza-installed
STREAM_ARGS ?=

# For the tests only: the page's test drives a real headless Chromium.
TEST_APT_PACKAGES = chromium chromium-driver

.PHONY: setup system-packages test-packages run test test-all bench soak stop-loop fuzz

setup: system-packages $(STAMP)

# Installs the Debian packages of $(1) that are missing (apt-get update first; nothing when all are there).
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

system-packages:
	$(call apt_install,$(APT_PACKAGES))

test-packages:
	$(call apt_install,$(TEST_APT_PACKAGES))

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[cpu,dev]"
	touch $(STAMP)

run: setup
	$(VENV)/bin/cadenza stream $(STREAM_ARGS)

# The suite without the tests marked slow (over 30 s each) or quarantined (flaky, being fixed);
# test-all runs everything (nightly).
test: setup test-packages
	$(VENV)/bin/python -m pytest -m "not slow and not quarantined"

test-all: setup test-packages
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python -m bench

# A 30-minute stream under a random control flood: memory, hanging notes, timing drift.
soak: setup
	$(VENV)/bin/python -m bench.soak --seconds 1800

# 40 streams stopped every way there is, with a busy loop per core beside them: no note left sounding.
stop-loop: setup
	$(VENV)/bin/python -m bench.stop_loop --streams 40 --busy 2

# The fuzz tests, run much longer than in the suite.
fuzz: setup
	CADENZA_FUZZ_EXAMPLES=20000 $(VENV)/bin/python -m pytest tests/test_fuzz.py
