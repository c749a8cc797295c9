# isod — one entry point per job. `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-all demo proto bench lint clean

install: $(STAMP)

# Re-installs only when the project's metadata changes (editable install).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# isod's own tests run under isod (strict, embedded daemon), each in a
# worker of its size's class: a spawn in a small test fails the build with
# TC003, a medium test that connects beyond loopback fails it with TC001.
# Medium and large workers have no seccomp filter, so the tests that start
# sandboxes of their own run there. xlarge tests (a 50 s third-party suite)
# run in `test-all` only.
test: lint
	$(PY) -m pytest -q -p isod_client -m "not xlarge" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -q -p isod_client $(PYTEST_ARGS)

demo: install
	$(PY) -m isod.demo

# Regenerates the protobuf/gRPC code from proto/ into daemon/isod/v1 (generated only).
proto: install
	$(PY) -m grpc_tools.protoc -I proto --python_out=daemon --pyi_out=daemon --grpc_python_out=daemon proto/isod/v1/isod.proto

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

lint: install
	$(PY) -m ruff check daemon client tests bench

clean:
	rm -rf $(VENV) build *.egg-info
