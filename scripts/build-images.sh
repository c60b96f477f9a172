#!/usr/bin/env bash
# Builds the three images from docker/*.Dockerfile (context: the repository root):
#   executor-demo/executor:demo      docker/runner.Dockerfile
#   executor-demo/fetcher:demo       docker/fetcher.Dockerfile
#   executor-demo/coordinator:demo   docker/coordinator.Dockerfile
# Needs a running Docker engine (BuildKit); fails with a clear message when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1; then
  echo "error: make images needs Docker, and the docker command is not installed" >&2
  exit 1
fi
if ! info_err=$(docker info 2>&1 >/dev/null); then
  echo "error: make images needs a running Docker engine, and there is none here: 'docker info' failed:" >&2
  printf '%s\n' "$info_err" | grep -v '^\s*$' | tail -n 3 | sed 's/^/       /' >&2
  echo "       (start the Docker daemon, or build on a machine that has one)" >&2
  exit 1
fi

export DOCKER_BUILDKIT=1
build() {
  echo "building $2 from $1" >&2
  docker build -f "$1" -t "$2" . || { echo "error: docker build -f $1 -t $2 failed" >&2; exit 1; }
}
build docker/runner.Dockerfile executor-demo/executor:demo
build docker/fetcher.Dockerfile executor-demo/fetcher:demo
build docker/coordinator.Dockerfile executor-demo/coordinator:demo
echo "built executor-demo/executor:demo executor-demo/fetcher:demo executor-demo/coordinator:demo" >&2
