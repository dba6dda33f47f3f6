# `make app`: set up and start the app.  `make test`: set up and run the tests (and list the 15 slowest).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHROMIUM := /usr/bin/chromium
# CI=true (as .ci/run sets, and as tests/conftest.py reads it): nothing may skip, so a missing browser is an error.
IN_CI := $(filter 1 true True TRUE,$(CI))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: app test lint browser

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

app: $(VENV)/.runtime
	$(PY) app.py

# Chromium for tests/test_app_browser.py, from Debian (Playwright cannot download its browsers here).
# Without apt-get (not Debian/Ubuntu) it only says so: the browser test then skips, naming the reason; under CI=true
# it stops with an error instead.
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif [ -n "$(IN_CI)" ]; then echo "make browser: no $(CHROMIUM) and no apt-get; CI=true needs it" >&2; exit 1; \
	else echo "make browser: no $(CHROMIUM) and no apt-get; the browser test will be skipped" >&2; fi

test: $(VENV)/.dev browser
	$(PY) -m ruff check .
	$(PY) -m pytest --durations=15
