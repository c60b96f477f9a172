#!/usr/bin/env bash
# Installs the reference WASI implementation for the runner's differential test
# (runner/tests/wasi.rs) and `make bench-runner`: the PyPI package wasmtime (pinned), which
# embeds wasmtime and its WASI preview1, into a virtualenv under target/. Does nothing when
# the pinned version is already there. Fails loudly, naming the cause, when it cannot
# install: the differential test is never skipped.
#
#   scripts/ensure-wasmtime.sh          # prints the venv's python (relative to the repo)
#   WASMTIME_VENV=dir scripts/ensure-wasmtime.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pip-venv.sh
. scripts/pip-venv.sh

venv=${WASMTIME_VENV:-target/wasmtime-venv}
ensure_pip_venv "$venv" wasmtime==50.0.1 \
  'import wasmtime; wasmtime.Engine()  # the package and its native library load' \
  "the runner's WASI differential test (runner/tests/wasi.rs)"
echo "$venv/bin/python"
