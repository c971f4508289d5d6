# `make test` and `make demo` set everything up from nothing on a fresh machine:
# they install uv with pip when it is missing, create .venv from uv.lock and run.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

# uv must get a real interpreter path: pyenv's python3.12 shim trips it.
PYTHON ?= $(shell for p in "$$(pyenv root 2>/dev/null)"/versions/3.12.*/bin/python3.12 \
	$$(command -v python3.12 2>/dev/null) /usr/bin/python3.12 /usr/local/bin/python3.12; do \
	[ -x "$$p" ] && "$$p" -c 'import sys' 2>/dev/null && { echo "$$p"; break; }; done)
UV := $(shell command -v uv >/dev/null 2>&1 && uv --version >/dev/null 2>&1 && echo uv || echo "python3 -m uv")
VENV := .venv
PYTEST_ARGS ?=
# Three xdist workers on two cores: the e2e modules (two of the workers, from the start) keep both cores busy, but the
# integration and sandbox modules spend half their time waiting on the sandbox's compressed cloud delays (node
# pools, HPA windows, outages), which a third worker fills (measured: CONTRIBUTING.md, "The suite's time").
TEST_WORKERS ?= 3
# The project's own tools (kubectl pinned in uv.lock, airflow, ack-sandbox) come first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test demo lock clean bench lint browser compose-check compose-check-dagrun

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@[ -n "$(PYTHON)" ] || { echo "Python 3.12 not found: set PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(UV) sync --frozen --all-extras --python "$(PYTHON)"
	@touch $@

setup: $(VENV)/.synced

# Headless Chromium for the browser test (tests/e2e/test_ui_browser.py), from the system's packages: Playwright
# drives it by path (its own browser download is not used). Installed here so a fresh machine (CI) has it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing chromium (apt-get) for the browser test"; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: setup browser
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python -m demo

bench: setup
	$(VENV)/bin/python -m benchmarks

# The whole tree is kept in `ruff format` style.
LINT_FORMATTED := .

# ruff (lint + format), mypy on the provider, the import contracts (all configured in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check $(LINT_FORMATTED)
	$(VENV)/bin/mypy plugins
	$(VENV)/bin/lint-imports

# Builds and runs Dockerfile + docker-compose.yaml for real in rootful podman (stand-in base images, since no
# registry is reachable), checks the stack and takes it down (compose/README.md). Not part of `make test`.
compose-check: setup
	$(VENV)/bin/python compose/check.py

# The same, plus the deploy DAG run inside the stack against a sandbox started on the host (compose/README.md).
compose-check-dagrun: setup
	EI_CHECK_DAG_RUN=1 $(VENV)/bin/python compose/check.py

lock:
	$(UV) lock --python "$(PYTHON)"

clean:
	rm -rf $(VENV) .pytest_cache
