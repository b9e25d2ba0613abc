# snf-cloud: entry points for operators and developers (see README.md).
#
#   make demo      bring up the cloud on this machine (installs what it needs first)
#   make test      unit + integration + e2e tests (installs what it needs first; what CI runs)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAMAKI := $(HOME)/.local/bin/kamaki
PYTEST_ARGS ?=

# make install: where Ganeti looks, and the interpreter written into the shims.
DESTDIR ?=
PREFIX ?= /usr/local
GANETI_LIBDIR ?= $(PREFIX)/lib/ganeti
UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
SHIM_PYTHON ?= $(abspath $(PY))

.PHONY: deps sysdeps pydeps test unit integration e2e lint bench bench-smoke \
        testbed testbed-down demo install clean

deps: sysdeps pydeps

sysdeps:
	@packaging/install-system-packages

pydeps: $(STAMP) $(KAMAKI)
	@packaging/link-debian-modules $(VENV)

# kamaki 0.16 is Python 2 only: the e2e tests run it under pyenv's 2.7.18.
$(KAMAKI):
	PYENV_VERSION=2.7.18 python2 -m pip install -q --user kamaki

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --only-binary lxml,xmlsec -e '.[test]'
	touch $@

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

unit: pydeps
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: deps
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: pydeps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: deps
	$(PY) -m tests.bench

bench-smoke: deps
	$(PY) -m tests.bench --smoke

testbed: deps
	$(PY) -m tests.testbed up

testbed-down: pydeps
	$(PY) -m tests.testbed down

demo: deps
	$(PY) -m tests.testbed demo

install: pydeps
	$(PY) packaging/install_ganeti_files.py --destdir "$(or $(DESTDIR),/)" \
	  --ganeti-libdir "$(GANETI_LIBDIR)" --sysconfdir "$(SYSCONFDIR)" --python "$(SHIM_PYTHON)" \
	  --unit-dir "$(UNIT_DIR)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
