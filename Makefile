# The two commands of the quick start: `make run` and `make test`.
# Both create the virtual environment on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test faults clean browser-deps

# setuptools>=70.1 builds wheels without the separate `wheel` package; Python 3.11's venv
# bundles 65.x, which cannot (a deploy test builds the Dockerfile builder stage's wheel).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=70.1'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gradtrace-standalone

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest

faults: $(STAMP)
	$(BIN)/python -m pytest -m faults

# Debian's chromium for tests/browser (Playwright drives it; never `playwright install`).
# Installed when missing and running as root (CI); otherwise say how, and the browser
# tests skip (under CI=true they fail).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq --no-install-recommends chromium; } \
	  || echo "browser tests need chromium: sudo apt-get install -y chromium"

clean:
	rm -rf $(VENV) .gradtrace .pytest_cache
