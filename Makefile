# Task runner: `make help` lists the recipes. The README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
FUNCTIONS := $(notdir $(wildcard functions/*))

.PHONY: help venv demo up test test-rust test-infra lint schemas bench bench-serving lambda-build cold-start

help: ## List the recipes
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

venv: ## Create/refresh the Python virtualenv (.venv) with the pinned tools from requirements.txt
	@scripts/venv.sh

demo: venv ## Run the local pipeline end to end: moto, functions in-process, a sample dataset, its timeline
	$(CARGO) run --quiet --bin mlops -- dev demo

up: venv ## The demo's local stack left running for use by hand (endpoints, then events as they happen) until Ctrl-C
	$(CARGO) run --quiet --bin mlops -- dev up

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust: venv ## Rust unit, stage and integration tests (moto and pandas from .venv)
	$(CARGO) test --workspace

test-infra: venv ## CDK app: jest, offline synth, cfn-lint, cdk-nag
	cd infra && npm ci --no-audit --no-fund && npm run check

test: lint test-rust test-infra ## Every test: lint, Rust tests, infra tests

schemas: ## Regenerate events/schemas from the Rust event types
	$(CARGO) run --quiet --bin mlops -- schemas

bench: venv ## Preparation benchmark: mlops prepare vs pandas vs cp on a ~1 GB CSV
	$(CARGO) build --release --bin mlops
	.venv/bin/python bench/prepare_bench.py --mlops $${CARGO_TARGET_DIR:-target}/release/mlops

bench-serving: ## Serving target: scale-sim at 3 and 10 min start-up, ±30% step time (TRACES="more.csv ..." adds traces)
	$(CARGO) build --release --bin mlops
	bench/scale_sim.sh $${CARGO_TARGET_DIR:-target}/release/mlops $(TRACES)

lambda-build: venv ## Package every function with cargo-lambda (x86_64; add ARGS=--arm64 where that target exists)
	PATH="$$PWD/.venv/bin:$$PATH" $(CARGO) lambda build --release --output-format zip --lambda-dir $${LAMBDA_DIR:-target/lambda} $(foreach f,$(FUNCTIONS),-p $(f)) $(ARGS)

cold-start: lambda-build ## Cold start of each packaged function against a local Lambda Runtime API
	d=$$(mktemp -d) && for f in $(FUNCTIONS); do mkdir -p $$d/$$f && unzip -q -o $${LAMBDA_DIR:-target/lambda}/$$f/bootstrap.zip -d $$d/$$f; done && \
	.venv/bin/python bench/cold_start.py --lambda-dir $$d
