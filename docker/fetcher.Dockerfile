# The `fetcher` image: fetches a task's module and input by CID, verified (the `fetcher` init container).
#
# Build from the repository root (the context is the whole workspace; see .dockerignore):
#   docker build -f docker/fetcher.Dockerfile -t executor-demo/fetcher:demo .
# or `make images`. Needs BuildKit (the default builder since Docker 23) for the cache mounts.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds; the binary is copied out of the cached
# target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=wasm-exec-target-fetcher \
    cargo build --release --locked -p fetcher \
 && install -D -m 0755 target/release/fetcher /out/fetcher

# glibc and libgcc (what a Rust binary links against), CA certificates, no shell; user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/fetcher /usr/local/bin/fetcher
# Init-container mode is driven by IPFS_GATEWAY, WASM_CID, INPUT_CID and FETCH_DIR (default
# /mnt/input), which the coordinator sets per task.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fetcher"]
