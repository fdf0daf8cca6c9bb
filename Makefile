# The two entry points of the README: `make run` and `make test`.
# Each creates .venv (once) and installs the project with what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean browser spin

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/msrvirt review

# The review's browser test needs Debian's chromium; install it where we may (root, as in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium missing and not root: the browser test will skip"; fi; }

# `msrvirt check --engine spin` needs Debian's spin and a C compiler; install them where we
# may (root, as in CI), so that the differential test of the two engines runs.
spin:
	@{ command -v spin && command -v cc; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq spin gcc; \
	  else echo "spin or cc missing and not root: the spin tests will skip"; fi; }

# The coverage floor only goes up (docs/testing.md).
COVERAGE_FLOOR := 93

test: $(STAMP) browser spin
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest --cov=msrvirt --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

bench: $(STAMP)
	$(PY) bench/bench_policy.py
	$(PY) bench/bench_live.py
	$(PY) bench/bench_conformance.py
	$(PY) bench/bench_check.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
