#!/usr/bin/env bash
# Installs the offline manifest validator for `make manifests-check`: the PyPI package
# kubernetes-validate (pinned), which bundles the upstream Kubernetes JSON schemas (strict
# variants included), into a virtualenv under target/. Nothing is fetched at check time.
# Does nothing when the pinned version is already there. Fails loudly, naming the cause,
# when it cannot install: the check is never skipped.
#
#   scripts/ensure-validate.sh          # prints nothing on success
#   VALIDATE_VENV=dir scripts/ensure-validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VALIDATE_VENV:-target/validate-venv}
pkg=kubernetes-validate
version=1.37.0

installed() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$pkg" "$version" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import kubernetes_validate.utils  # noqa: F401  (the package and its dependencies import)
sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
EOF
}

installed && exit 0

fail() {
  echo "error: scripts/ensure-validate.sh: $*" >&2
  echo "       make manifests-check needs $pkg==$version in $venv and does not run without it" >&2
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

echo "installing $pkg==$version (Kubernetes JSON schemas for offline validation) into $venv" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv" || fail "python3 -m venv $venv failed"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$pkg==$version" \
  || fail "pip install $pkg==$version failed (is PyPI reachable?)"
installed || fail "$pkg==$version was installed into $venv but does not import"
