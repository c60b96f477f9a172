# wasm-exec: the entry points. `make demo` and `make test` do all the set-up themselves on a
# fresh machine with the Rust toolchain (Debian packages they need are installed by
# scripts/ensure-tools.sh, as root or through sudo).

CARGO ?= cargo
SCENARIO ?= all
RUNNER := target/release/runner
DEMO_OUT := host/shared

.PHONY: all build test lint unit wasm wasm-check tools demo bench-runner bench-fetcher clean

all: build

build:
	$(CARGO) build --workspace --release

## test: formatting, clippy, every unit/integration/end-to-end test, and the samples' rebuild check
test: lint unit wasm-check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --no-fail-fast

tools:
	@scripts/ensure-tools.sh

## wasm: rebuild the sample modules in host/wasm from their sources
wasm: tools
	$(MAKE) -C host/wasm

wasm-check: tools
	$(MAKE) -C host/wasm check
	$(MAKE) -C bench/runner check

## demo: run the sample tasks through the runner (SCENARIO=fib|affine|add|stats|all)
demo: build
	@scripts/demo.sh $(RUNNER) $(SCENARIO) $(DEMO_OUT)

## bench-runner: runner vs native C on the same kernels (a table; not a test)
bench-runner: tools
	$(CARGO) build --release -p runner
	$(MAKE) -C bench/runner
	$(CARGO) bench -p runner --bench runner_vs_native

## bench-fetcher: a 50 MiB module over loopback, verified vs plain; fetcher cid vs sha256sum
bench-fetcher:
	$(CARGO) build --release -p fetcher
	$(CARGO) bench -p fetcher --bench fetcher_vs_plain

clean:
	$(CARGO) clean
