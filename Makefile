# eds: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed here, into the project (.venv/, target/).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PYTHON ?= python3
WITH_EMULATOR := infra/local/scripts/with-emulator.sh
export SAM_CLI_TELEMETRY := 0
export AWS_EC2_METADATA_DISABLED := true

.PHONY: all test nextest demo bench venv emulator fmt lint validate unit sam-build sam-test-build sam-local deploy clean

all: test

## venv: the project-local Python tools (moto server, SAM CLI, cargo-lambda);
## emulator: only the moto server (all that `make demo` and `make bench` need)
venv: $(VENV)/.installed
emulator: $(VENV)/.emulator

$(VENV)/.emulator: infra/local/requirements-emulator.txt
	@command -v $(PYTHON) >/dev/null || { echo "python3 is needed to install the local AWS emulator"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements-emulator.txt
	touch $@

$(VENV)/.installed: infra/local/requirements.txt $(VENV)/.emulator
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/local/requirements.txt
	touch $@

## test: formatting, lints, the SAM template lint, and every test against the local stack.
## The tests run under cargo-nextest in two halves at once, each with an emulator of its own
## (moto is single-threaded: one emulator keeps one core busy; docs/testing.md).
## NEXTEST_ARGS passes options to both halves (e.g. NEXTEST_ARGS="-E 'test(crash)'").
## The SAM CLI tests (tests/runtime/tests/sam.rs: every function under `sam local invoke`,
## the end-to-end flow through `sam local start-lambda`) need Docker; before the tests the
## offline base image is built and the functions are built as `sam build` lays them out.
## They run in the first half, whose emulator listens on the Docker bridge gateway so the
## containers reach it. SAM_LOCAL=0 is the explicit opt-out for a machine without Docker.
NEXTEST_ARGS ?=
SAM_LOCAL ?= 1
SAM_GATEWAY = $(or $(shell ip -4 -o addr show docker0 2>/dev/null | awk '{split($$4, a, "/"); print a[1]; exit}'),172.17.0.1)
ifeq ($(SAM_LOCAL),0)
SLOW_TESTS := binary(reliability)
SLOW_HOST := 127.0.0.1
else
SLOW_TESTS := binary(reliability) | binary(sam)
SLOW_HOST = $(SAM_GATEWAY)
endif
test: venv nextest
	cargo fmt --all -- --check
	$(VENV)/bin/sam validate --lint -t infra/template.yaml
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo nextest run --workspace --locked --no-run
	cargo test --workspace --locked --doc
	if [ "$(SAM_LOCAL)" != 0 ]; then $(MAKE) --no-print-directory sam-test-build; fi
	slow=0; rest=0; \
	EDS_EMULATOR_HOST=$(SLOW_HOST) $(WITH_EMULATOR) cargo nextest run --workspace --locked --no-fail-fast -E '$(SLOW_TESTS)' $(NEXTEST_ARGS) & pid=$$!; \
	$(WITH_EMULATOR) cargo nextest run --workspace --locked --no-fail-fast -E 'not ($(SLOW_TESTS) | binary(sam))' $(NEXTEST_ARGS) || rest=$$?; \
	wait $$pid || slow=$$?; \
	if [ $$slow -ne 0 ] || [ $$rest -ne 0 ]; then echo "tests failed (reliability half: $$slow, the rest: $$rest)"; exit 1; fi

## nextest: the test runner (on this kind of machine it comes with the toolchain)
nextest:
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

## demo: the main job end to end on the local stack: emulator + simulator, push, enable,
## sync with progress, the report checked against the scenario's manifest, disable.
## ATS picks the simulated ATS (greenhouse or lever: `make demo ATS=lever`); DEMO_ARGS
## passes options to `edsctl demo` (e.g. DEMO_ARGS="--candidates 500").
ATS ?= greenhouse
DEMO_ARGS ?=
demo: emulator
	cargo build --locked -q -p edsctl
	EDS_LOCAL_TESTING=true $(WITH_EMULATOR) cargo run --locked -q -p edsctl -- demo --ats $(ATS) $(DEMO_ARGS)

## bench: every benchmark (issue I): criterion benches, then eds-bench on the local stack;
## writes target/bench/report.json and target/bench/summary.md (docs/benchmarks.md explains them).
## One release build for the functions, eds-bench and the two criterion benchmarks (built as
## examples: a bench target's dependencies would be compiled a second time); criterion
## measures 2 s per benchmark after 1 s of warm-up, alone on the machine (D17).
BENCH_ARGS ?=
CRITERION_ARGS ?= --warm-up-time 1 --measurement-time 2
FUNCTION_BINS := scheduler puller push-ingest settings disable delete records-api
bench: emulator
	cargo build --locked --release $(addprefix --bin ,$(FUNCTION_BINS) eds-bench) --example bench_merge --example bench_serve
	target/release/examples/bench_merge --bench $(CRITERION_ARGS)
	target/release/examples/bench_serve --bench $(CRITERION_ARGS)
	$(WITH_EMULATOR) target/release/eds-bench run $(BENCH_ARGS)
	target/release/eds-bench report

## sam-build: every function built as `sam build` lays it out (.aws-sam/build), offline.
## The template's functions use `BuildMethod: makefile` (D26): SAM runs `make build-<Function>`
## below once per function; the first compiles every function binary in ONE cargo invocation
## (shared dependencies, linked in parallel), the others find them built and copy theirs.
## SAM_PROFILE=release (the default, what `sam deploy` ships): `cargo lambda build --release`,
## linked for Lambda's glibc with zig. SAM_PROFILE=debug (the SAM CLI tests): a plain host
## `cargo build`, run in the local base image built from this host (sam-base-image.sh).
SAM_PROFILE ?= release
SAM_BUILD_ARGS := --build-in-source --template-file infra/template.yaml
sam-build: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" SAM_PROFILE=$(SAM_PROFILE) $(VENV)/bin/sam build $(SAM_BUILD_ARGS)

## sam-test-build: what the SAM CLI tests need: the offline base image (fails with one
## sentence if Docker is missing) and the debug build in the `sam build` layout.
sam-test-build: venv
	infra/local/scripts/sam-base-image.sh
	$(MAKE) --no-print-directory sam-build SAM_PROFILE=debug

## sam-local: the SAM CLI's `sam local start-lambda` (the Lambda Invoke API on
## 127.0.0.1:3001, SAM_LOCAL_PORT to change) for every function, on the local stack:
## the offline base image, the debug sam build, moto and the Greenhouse simulator on the
## Docker bridge, stage `local` provisioned, the --env-vars file written
## (.local/sam-local/env.json). Ctrl-C stops everything it started (docs/deploy.md).
sam-local: sam-test-build
	EDS_EMULATOR_HOST=$(SAM_GATEWAY) $(WITH_EMULATOR) infra/local/scripts/sam-local.sh $(SAM_GATEWAY)

# The template's function -> its binary; infra/local/tests/template.rs checks this list
# against the template (every function, its BuildProperties.Binary, BuildMethod makefile).
SAM_FUNCTIONS := SchedulerFunction=scheduler PullerFunction=puller PushIngestFunction=push-ingest \
  SettingsFunction=settings DisableFunction=disable DeleteFunction=delete RecordsApiFunction=records-api
sam_bin = $(patsubst $(1)=%,%,$(filter $(1)=%,$(SAM_FUNCTIONS)))
SAM_TARGETS := $(foreach f,$(SAM_FUNCTIONS),build-$(firstword $(subst =, ,$(f))))
.PHONY: sam-binaries $(SAM_TARGETS)
# The debug build resolves features as the test build does (`--workspace --tests`: dev-
# dependencies' features unified in), so after `cargo nextest run --no-run` it compiles only
# the seven binaries (48 s) instead of every dependency a second time (about 8 min).
# The runtime tests (tests/runtime) build their binaries through this target too.
sam-binaries:
ifeq ($(SAM_PROFILE),debug)
	cargo build --locked --quiet --workspace --tests --bins
else
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --locked --quiet --release $(addprefix --bin ,$(FUNCTION_BINS))
endif
$(SAM_TARGETS): build-%: sam-binaries
	@test -n "$${ARTIFACTS_DIR:-}" || { echo "$@ is run by sam build (make sam-build), which sets ARTIFACTS_DIR"; exit 1; }
	cp $(if $(filter debug,$(SAM_PROFILE)),target/debug/$(call sam_bin,$*),target/lambda/$(call sam_bin,$*)/bootstrap) "$$ARTIFACTS_DIR/bootstrap"

## deploy: guided deployment to the AWS account of your current credentials (docs/deploy.md)
deploy: sam-build
	$(VENV)/bin/sam deploy --guided

validate: venv
	$(VENV)/bin/sam validate --lint -t infra/template.yaml

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV) .local .aws-sam
