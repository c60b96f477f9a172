#!/usr/bin/env bash
# Installs the Python packages the checks use, pinned, into a virtualenv under target/:
# kubernetes-validate, which bundles the upstream Kubernetes JSON schemas (strict variants
# included) for `make manifests-check`; cryptography (Ed25519) and rfc8785 (canonical JSON),
# the implementations the receipt tests check ours against (`make unit`). Nothing is fetched at check time.
# Does nothing when the pinned versions are already there. Fails loudly, naming the cause,
# when it cannot install: no check is ever skipped.
#
#   scripts/ensure-validate.sh          # prints nothing on success
#   VALIDATE_VENV=dir scripts/ensure-validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VALIDATE_VENV:-target/validate-venv}
pins=(kubernetes-validate==1.37.0 cryptography==46.0.3 rfc8785==0.1.4)

installed() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - "${pins[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import kubernetes_validate.utils  # noqa: F401  (the packages and their dependencies import)
import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
import rfc8785  # noqa: F401
sys.exit(0 if all(version(p.split("==")[0]) == p.split("==")[1] for p in sys.argv[1:]) else 1)
EOF
}

installed && exit 0

fail() {
  echo "error: scripts/ensure-validate.sh: $*" >&2
  echo "       make manifests-check and make unit need ${pins[*]} in $venv and do not run without them" >&2
  exit 1
}

# Debian's python3 lacks venv (ensurepip) without python3-venv: install it as ensure-tools.sh
# installs its packages, as root or through sudo.
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "need the Debian packages $* and cannot install them without root (run: apt-get install $*)"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || fail "need $* (no apt-get here to install them)"
  echo "installing missing packages: $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq || fail "apt-get update failed"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null || fail "apt-get install $* failed"
}

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

echo "installing ${pins[*]} (offline Kubernetes schemas; Ed25519 for the receipt tests) into $venv" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv" || fail "python3 -m venv $venv failed"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${pins[@]}" \
  || fail "pip install ${pins[*]} failed (is PyPI reachable?)"
installed || fail "${pins[*]} were installed into $venv but do not import"
