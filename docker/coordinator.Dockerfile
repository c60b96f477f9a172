# The `coordinator` image: the long-running service that runs each task as a Kubernetes Job.
#
# Build from the repository root (the context is the whole workspace; see .dockerignore):
#   docker build -f docker/coordinator.Dockerfile -t executor-demo/coordinator:demo .
# or `make images`. Needs BuildKit (the default builder since Docker 23) for the cache mounts.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds; the binary is copied out of the cached
# target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=wasm-exec-target-coordinator \
    cargo build --release --locked -p coordinator \
 && install -D -m 0755 target/release/coordinator /out/coordinator

# glibc and libgcc (what a Rust binary links against), CA certificates, no shell; user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/coordinator /usr/local/bin/coordinator
# A copy of the Job template, so the image works on its own; k8s/coordinator.yaml mounts the
# ConfigMap wasm-exec-job-template over /etc/wasm-exec instead. Only the coordinator binary
# is here: the local backend (fetcher and runner as child processes) is for `make demo`.
COPY k8s/job.yaml /etc/wasm-exec/job.yaml
ENV COORDINATOR_JOB_TEMPLATE=/etc/wasm-exec/job.yaml
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/coordinator"]
