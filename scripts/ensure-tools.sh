#!/usr/bin/env bash
# Installs the Debian packages the build and tests need beyond the Rust toolchain, when they
# are missing: wabt (wat2wasm) and clang + lld + wasi-libc + the wasm32 compiler runtime, for
# rebuilding and checking the sample modules in host/wasm; shellcheck, for the scripts; nodejs
# and npm, for the pinned Solidity compiler and chain tools. Runs apt-get as root, or through
# sudo; elsewhere it fails naming the packages, rather than letting a test skip silently.
# Then installs those npm tools (solcjs, anvil, cast) into .tools/ with
# scripts/ensure-chain-tools.sh.
set -euo pipefail

missing=()
command -v wat2wasm >/dev/null 2>&1 || missing+=(wabt)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v wasm-ld >/dev/null 2>&1 || missing+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
if command -v clang >/dev/null 2>&1; then
  rt=$(clang --target=wasm32-wasi -print-libgcc-file-name 2>/dev/null || true)
  [ -n "$rt" ] && [ -f "$rt" ] || missing+=("libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev-wasm32")
else
  missing+=(libclang-rt-14-dev-wasm32)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing missing build tools: ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "error: these Debian packages are needed and cannot be installed without root: ${missing[*]}" >&2
    echo "       run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here; install the equivalents of: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$(dirname "$0")/ensure-chain-tools.sh"
