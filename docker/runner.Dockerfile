# The `runner` image: runs one WebAssembly task (the `runner` container of a task's Job).
#
# Build from the repository root (the context is the whole workspace; see .dockerignore):
#   docker build -f docker/runner.Dockerfile -t executor-demo/executor:demo .
# or `make images`. Needs BuildKit (the default builder since Docker 23) for the cache mounts.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds; the binary is copied out of the cached
# target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=wasm-exec-target-runner \
    cargo build --release --locked -p runner \
 && install -D -m 0755 target/release/runner /out/runner

# glibc and libgcc (what a Rust binary links against), CA certificates, no shell; user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/runner /usr/local/bin/runner
# The binary's defaults already match the pod layout of k8s/job.yaml: the module at
# /mnt/input/module.wasm, the input at /mnt/input/input.json (when it exists), the result
# at /mnt/shared/result.json and /dev/termination-log. Set them here for clarity only.
ENV WASM_PATH=/mnt/input/module.wasm \
    OUTPUT_PATH=/mnt/shared/result.json
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/runner"]
