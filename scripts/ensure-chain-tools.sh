#!/usr/bin/env bash
# Installs the pinned Solidity compiler (npm solc, solcjs) and chain tools (npm
# @foundry-rs/anvil and @foundry-rs/cast) into .tools/node, exactly as contracts/package.json
# and contracts/package-lock.json pin them (`npm ci`, integrity-checked), and links them at
# stable paths:
#   .tools/bin/solcjs  .tools/bin/anvil  .tools/bin/cast
# Prints nothing when they are already there, installed from the same lockfile. Fails,
# naming what is missing, when node or npm is absent or the install does not give the
# binaries.
#
# anvil and cast are native binaries shipped in per-platform npm packages
# (@foundry-rs/anvil-linux-amd64/bin/anvil, …), optional dependencies of the wrapper
# packages. The wrappers' postinstall would download a missing platform package itself;
# install scripts are off here (--ignore-scripts), so a platform package that npm did not
# install is an error below, not a download outside the lockfile.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$root/.tools/node
bin=$root/.tools/bin
pins=$root/contracts

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "error: $tool is needed for the Solidity compiler and the chain tools, and is not installed" >&2
    echo "       run scripts/ensure-tools.sh (as root or with sudo), or: apt-get install nodejs npm" >&2
    exit 1
  }
done

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/amd64) platform=linux-amd64 ;;
  Linux/aarch64 | Linux/arm64) platform=linux-arm64 ;;
  Darwin/x86_64) platform=darwin-amd64 ;;
  Darwin/arm64) platform=darwin-arm64 ;;
  *)
    echo "error: no @foundry-rs binaries for $(uname -s)/$(uname -m)" >&2
    exit 1
    ;;
esac

names=(solcjs anvil cast)
# Where each name's binary lands inside .tools/node.
target_of() {
  case "$1" in
    solcjs) echo node_modules/solc/solc.js ;;
    anvil | cast) echo "node_modules/@foundry-rs/$1-$platform/bin/$1" ;;
  esac
}
# Written last, once every binary ran: the lockfile the tools were installed from.
stamp=$prefix/installed-from.lock

installed() {
  cmp -s "$pins/package-lock.json" "$stamp" || return 1
  local name
  for name in "${names[@]}"; do
    [ -x "$bin/$name" ] || return 1
  done
}

installed && exit 0

# One install at a time (make -j): the second waits, then finds it done. (flock is
# util-linux's; where there is none, as on macOS, installs are not serialized.)
mkdir -p "$prefix" "$bin"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/.tools/install.lock"
  flock 9
  installed && exit 0
fi

echo "installing the Solidity compiler and chain tools pinned in contracts/package-lock.json into .tools/node" >&2
rm -f "$stamp"
cp "$pins/package.json" "$pins/package-lock.json" "$prefix/"
if ! npm ci --prefix "$prefix" --ignore-scripts --include=optional --no-audit --no-fund --loglevel=error >&2; then
  echo "error: npm ci of contracts/package-lock.json into .tools/node failed (see npm's message above)" >&2
  exit 1
fi

for name in "${names[@]}"; do
  target=$(target_of "$name")
  if [ ! -f "$prefix/$target" ]; then
    echo "error: npm installed no .tools/node/$target; for anvil and cast npm skips the platform" >&2
    echo "       package when it does not match this machine ($platform) or optional dependencies are omitted" >&2
    exit 1
  fi
  chmod +x "$prefix/$target"
  ln -sfn "../node/$target" "$bin/$name"
  # Each one has to run, not just be there (a binary built for another libc, say).
  "$bin/$name" --version >/dev/null || { echo "error: .tools/bin/$name (.tools/node/$target) does not run here" >&2; exit 1; }
done
cp "$pins/package-lock.json" "$stamp"
