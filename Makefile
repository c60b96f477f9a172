# wasm-exec: the entry points. `make demo` and `make test` do all the set-up themselves on a
# fresh machine with the Rust toolchain (Debian packages they need are installed by
# scripts/ensure-tools.sh, as root or through sudo).

CARGO ?= cargo
SCENARIO ?= all
DEMO_OUT := host/shared
FUZZ_SECONDS ?= 60

# Where cargo puts what it builds: CARGO_TARGET_DIR, build.target-dir of a cargo config, or
# target/ (cargo metadata knows which).
TARGET_DIR := $(shell $(CARGO) metadata --no-deps --format-version 1 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
ifeq ($(TARGET_DIR),)
TARGET_DIR := target
endif
# The binaries `make demo` and `make test` share: one dev build (see Cargo.toml's profiles).
DEV_BIN := $(TARGET_DIR)/debug
RELEASE_BIN := $(TARGET_DIR)/release

.PHONY: all build build-dev release test lint unit wasm wasm-check contracts contracts-check contract-test tools demo chain-demo cids bench-runner bench-fetcher bench-coordinator fuzz clean

all: build

## build: the three binaries (dev profile, the build `make demo` and `make test` share)
build: build-dev

build-dev:
	$(CARGO) build --workspace --bins

## release: the three binaries optimized, as the images and the benchmarks use them
release:
	$(CARGO) build --workspace --release

## test: formatting, clippy, shellcheck, the contract's artifact and chain check, every unit/integration/end-to-end test, and the samples' rebuild check
test: lint contracts-check contract-test unit wasm-check manifests-check

lint: tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	shellcheck scripts/*.sh .ci/run

# The end-to-end tests run the fetcher and runner binaries beside the coordinator's.
unit: build-dev
	@VALIDATE_VENV=$(VALIDATE_VENV) scripts/ensure-validate.sh
	VALIDATE_VENV=$(abspath $(VALIDATE_VENV)) $(CARGO) test --workspace --no-fail-fast

tools:
	@scripts/ensure-tools.sh

## wasm: rebuild the sample modules in host/wasm and the runner's WASI test programs from their sources
wasm: tools
	$(MAKE) -C host/wasm
	$(MAKE) -C runner/tests/wasi

wasm-check: tools
	$(MAKE) -C host/wasm check
	$(MAKE) -C bench/runner check
	$(MAKE) -C runner/tests/wasi check

## contracts: rebuild contracts/TaskRegistry.json from contracts/TaskRegistry.sol with the pinned solcjs (contracts/package-lock.json, installed into .tools/)
contracts: tools
	scripts/build-contracts.sh

## contracts-check: the committed contracts/TaskRegistry.json is what the pinned solcjs builds from the source, byte for byte
contracts-check: tools
	scripts/build-contracts.sh --check

## contract-test: deploy contracts/TaskRegistry.json on a local anvil (127.0.0.1, a free port) and drive it with cast: ids, events, results, every revert
contract-test: tools
	scripts/check-contract.sh

## demo: the coordinator runs the placeholder tasks with the local backend (SCENARIO=fib|affine|add|all)
demo: build-dev
	@mkdir -p $(DEMO_OUT)
	COORDINATOR_BACKEND=local $(DEV_BIN)/coordinator --once --scenario $(SCENARIO) --state $(DEMO_OUT)/ledger.sqlite \
	  --ipfs-mirror host/wasm --results $(DEMO_OUT)/results.jsonl --listen off
	@echo "results (one JSON object per task, each task once) in $(DEMO_OUT)/results.jsonl; the ledger $(DEMO_OUT)/ledger.sqlite remembers them (delete it to run the tasks again)"

## chain-demo: the coordinator takes the sample tasks from a TaskRegistry on a local anvil (127.0.0.1, a free port) and posts their results back: fib 144, affine 119, add 5, read back from the chain
chain-demo: build-dev tools
	@TARGET_DIR=$(TARGET_DIR) scripts/chain-demo.sh

## cids: the CIDs of the sample files, as the placeholder tasks use them
cids: build-dev
	@for f in host/wasm/*.wasm host/wasm/*-input.json; do \
	  printf '%-28s %s  %s\n' "$$f" "$$($(DEV_BIN)/fetcher cid $$f)" "$$($(DEV_BIN)/fetcher cid --cid-version 1 $$f)"; done

## bench-runner: runner vs native C on the same kernels, and the runner's WASI vs wasmtime's (PyPI wasmtime) on start-up and a call-heavy program (tables; not a test)
bench-runner: tools
	$(CARGO) build --release -p runner
	$(MAKE) -C bench/runner OUT=$(abspath $(TARGET_DIR))/bench
	RUNNER_BIN=$(RELEASE_BIN)/runner NATIVE_BENCH_BIN=$(TARGET_DIR)/bench/native_kernels \
	  $(CARGO) bench -p runner --bench runner_vs_native
	@scripts/ensure-wasmtime.sh >/dev/null
	RUNNER_BIN=$(RELEASE_BIN)/runner WASMTIME_PYTHON=$(abspath target/wasmtime-venv)/bin/python \
	  $(CARGO) bench -p runner --bench wasi_vs_wasmtime

## bench-fetcher: a 50 MiB module over loopback, verified vs plain; fetcher cid vs sha256sum
bench-fetcher:
	$(CARGO) build --release -p fetcher
	FETCHER_BIN=$(RELEASE_BIN)/fetcher $(CARGO) bench -p fetcher --bench fetcher_vs_plain

## bench-coordinator: 200 trivial tasks through the local backend at concurrency 1 and 2 (BASELINE_COORDINATOR=path adds another coordinator), POST /tasks at 100/s for 60 s, memory against a ledger of 1 000 vs 100 000 tasks, 100 tasks through the Kubernetes backend against the test stand-in, 200 tasks from submitTask to ResultPosted on anvil with the RPC calls per task (needs scripts/ensure-chain-tools.sh), 1 000 tasks with unsigned vs signed receipts and with the result cache off, missing and hitting
bench-coordinator:
	$(CARGO) build --release --workspace
	$(CARGO) bench -p coordinator --bench coordinator_local
	$(CARGO) bench -p coordinator --bench coordinator_api
	$(CARGO) bench -p coordinator --bench coordinator_ledger
	$(CARGO) bench -p coordinator --bench coordinator_kubernetes
	$(CARGO) bench -p coordinator --bench coordinator_chain
	$(CARGO) bench -p coordinator --bench coordinator_receipts

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (not part of `make test`; see fuzz/README.md)
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

clean:
	$(CARGO) clean

# Deployment: images, manifests, a kind cluster. Only manifests-check runs here without Docker
# or a cluster; it is part of `make test`.
.PHONY: manifests-check images kind-demo kind-down logs

VALIDATE_VENV ?= $(TARGET_DIR)/validate-venv

## manifests-check: k8s/*.yaml and the Jobs the coordinator generates (--print-job) against the Kubernetes 1.33 JSON schemas (strict, offline), the compose file, the Dockerfiles, and policy (no Secrets, least-privilege RBAC)
manifests-check:
	@VALIDATE_VENV=$(VALIDATE_VENV) scripts/ensure-validate.sh
	$(CARGO) build --quiet -p coordinator
	@mkdir -p $(TARGET_DIR)/generated
	COORDINATOR_IPFS_ENDPOINT=http://ipfs:8080 $(DEV_BIN)/coordinator --print-job \
	  '{"task_id":"Fib_1/a task id that is far too long to be a Kubernetes name as it is","wasm_cid":"Qmakqmav82dp99fynQmoZHUr8UgmnmopakEmEaTeTnMHg1","input_cid":"Qmaecf1kUsJ8Hv7A1amYTmYxVm4WWetBQv66qgXTg3WZiK","entry":"fib"}' \
	  > $(TARGET_DIR)/generated/job-fib.yaml
	COORDINATOR_IPFS_ENDPOINT=http://ipfs:8080 $(DEV_BIN)/coordinator --print-job \
	  '{"task_id":"stats","wasm_cid":"QmfZ7H1gRMey9ADX4gPezeughyT2d9EbpwXDa1K8NoysCy"}' \
	  > $(TARGET_DIR)/generated/job-stats.yaml
	COORDINATOR_IPFS_ENDPOINT=http://ipfs:8080 COORDINATOR_QUEUE_NAME=wasm-exec COORDINATOR_PRIORITY_CLASS=batch-low \
	  $(DEV_BIN)/coordinator --print-job '{"task_id":"queued","wasm_cid":"QmfZ7H1gRMey9ADX4gPezeughyT2d9EbpwXDa1K8NoysCy"}' \
	  > $(TARGET_DIR)/generated/job-kueue.yaml
	$(VALIDATE_VENV)/bin/python scripts/check-manifests.py --with $(TARGET_DIR)/generated/job-fib.yaml $(TARGET_DIR)/generated/job-stats.yaml $(TARGET_DIR)/generated/job-kueue.yaml

## images: docker build executor-demo/{executor,fetcher,coordinator}:demo (needs a running Docker engine)
images:
	@scripts/build-images.sh

## kind-demo: a kind cluster with IPFS, the samples, the Job template and two coordinators; waits for the sample tasks' results (needs docker, kind, kubectl); KUEUE=1: through Kueue (k8s/kueue/)
kind-demo:
	@TARGET_DIR=$(TARGET_DIR) KUEUE=$(KUEUE) scripts/kind-demo.sh

## kind-down: delete the kind cluster made by kind-demo
kind-down:
	@command -v kind >/dev/null 2>&1 || { echo "error: make kind-down needs kind, which is not installed" >&2; exit 1; }
	kind delete cluster --name wasm-exec

## logs: follow the coordinator's log and its task pods' (label app.kubernetes.io/managed-by=wasm-exec-coordinator)
logs:
	@scripts/logs.sh
