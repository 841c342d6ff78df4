# The two commands of the README:  `make run` (serve the demo) and `make test` (pass every test).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CACHE ?= .demo/cache
DEMO_STORE ?= .demo/store
HOST ?= 127.0.0.1
PORT ?= 8050

.PHONY: run test setup setup-run system-deps demo bench clean

# `make run` installs what running needs; `make test` adds the test tools (pytest, dash[testing]).
$(VENV)/.installed-run: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup-run: $(VENV)/.installed-run

setup: $(VENV)/.installed

# Chromium + driver for the browser tests, redis for the cache tests, poppler for PDF checks.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(DEMO_CACHE)/releases: | setup-run
	$(VENV)/bin/atlas-viewer demo $(DEMO_CACHE)

demo: $(DEMO_CACHE)/releases
	$(VENV)/bin/atlas-viewer prepare $(DEMO_CACHE) $(DEMO_STORE)

# served by gunicorn (one worker); `make run PORT=8060` picks another port, `HOST=0.0.0.0` listens beyond loopback
run: setup-run demo
	$(VENV)/bin/atlas-viewer serve $(DEMO_STORE) --host $(HOST) --port $(PORT)

test: setup system-deps
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(VENV)/bin/atlas-viewer bench

clean:
	rm -rf .demo
