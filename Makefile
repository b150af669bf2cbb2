# vllm-fleet: `make demo` runs the embedded default, `make test` runs every test.
# Both set up what they need on a Debian 12 machine, as root, from this repo's own files.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
APT_PACKAGES := docker.io debootstrap nginx-light dpkg-dev apt-utils gnupg iproute2 openssh-client python3-venv python3-pip git make
# Node.js and npm (Debian's, unless some node is there already) run the published schema packages of the cluster
# gateway's Gateway API and Envoy Gateway resources in tests/k8s.
# Some machines' pip.conf lists index directories that do not exist; pip warns about each, at length.
PIP_NOISE := is ignored: it is neither a file nor a directory
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
# Wall time of each phase, one "name seconds" line each; .ci/run prints them at the end of every CI log.
export VLLM_FLEET_PHASES ?= $(abspath .cache/phase-times)
# The cost ledger of the test run (seconds, deploy runs, vLLM engine starts, benchmark requests per test area);
# printed at the end of `make test` (tests/README.md, "The budget").
export VLLM_FLEET_LEDGER ?= $(abspath .cache/ledger.jsonl)
# $(call timed,NAME,COMMAND): run COMMAND and record its wall time as NAME.
timed = mkdir -p $(dir $(VLLM_FLEET_PHASES)); start=$$(date +%s); { $(2); } || exit $$?; \
	echo "$(1) $$(( $$(date +%s) - start ))" >> $(VLLM_FLEET_PHASES)

.PHONY: setup system-packages venv world demo lint test unit clean

setup: system-packages venv world

system-packages:
	@start=$$(date +%s); missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi; \
	mkdir -p $(dir $(VLLM_FLEET_PHASES)); echo "setup:system-packages $$(( $$(date +%s) - start ))" >> $(VLLM_FLEET_PHASES)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	@$(call timed,setup:venv,$(PY) -m pip install -q --upgrade "pip==25.3" 2> >(grep -v "$(PIP_NOISE)" >&2) \
	  && $(PY) -m pip install -q -e ".[dev]" 2> >(grep -v "$(PIP_NOISE)" >&2))
	touch $@

venv: $(VENV)/.installed
	$(PY) -c 'from vllm_fleet.vm.running.paths import ensure_collection_link as link; link()'

# The test world's images and models, built here while nothing else runs (under the tests' load the vLLM image
# took 13 minutes instead of 2); each is cached by its recipe's digest, so this takes seconds once built.
world: venv
	@$(call timed,setup:world,$(BIN)/vllm-fleet sandbox engine && $(BIN)/vllm-fleet sandbox image \
	  && $(PY) -m vllm_fleet.sandbox.vllm_image --archive && $(PY) -m vllm_fleet.sandbox.tiny_models)

demo: setup
	$(PY) -m vllm_fleet.sandbox.demo

lint: venv
	@$(call timed,lint,$(BIN)/ruff check src plugins tests benchmarks pulumi && $(BIN)/mypy \
	  && PYTHONPATH=$(abspath .collections) $(BIN)/lint-imports && $(BIN)/ansible-lint --profile production --offline)

unit: venv
	$(BIN)/pytest -m "not world"

# The tests that need no vLLM (Molecule, weights, CLI, units: mostly waiting on containers and networks) run on
# TEST_WORKERS parallel workers; then the real-vLLM worlds run alone, as their benchmark gates and failover timings
# need. Both phases always run; the target fails if either did.
TEST_WORKERS ?= 3
test: setup lint
	@$(PY) -m vllm_fleet.sandbox.memory
	@mkdir -p $(dir $(VLLM_FLEET_PHASES)); : > $(VLLM_FLEET_LEDGER); status=0; \
	start=$$(date +%s); VLLM_FLEET_TEST_PHASE=parallel $(BIN)/pytest -m "not vllm" -n $(TEST_WORKERS) \
	  --dist load || status=$$?; \
	echo "pytest:parallel $$(( $$(date +%s) - start ))" >> $(VLLM_FLEET_PHASES); \
	start=$$(date +%s); VLLM_FLEET_TEST_PHASE=vllm $(BIN)/pytest -m vllm || status=$$?; \
	echo "pytest:vllm $$(( $$(date +%s) - start ))" >> $(VLLM_FLEET_PHASES); \
	$(PY) -m vllm_fleet.sandbox.ledger; \
	exit $$status

clean:
	rm -rf $(VENV) .collections .ansible build
