# shellcheck shell=bash
# Sourced by the scripts that install pinned PyPI packages into a project-local virtualenv
# (ensure-validate.sh, ensure-wasmtime.sh). Defines:
#
#   ensure_pip_venv VENV "PKG==VERSION [PKG==VERSION...]" CHECK NEEDED_BY
#
# which does nothing when VENV has every pinned version and the Python lines CHECK (which
# should import the packages and exercise them) succeed there; otherwise installs
# python3-venv when Debian's python3 lacks it (as root or through sudo), creates VENV
# afresh and pip-installs the pins. Every failure exits 1 naming the cause and NEEDED_BY:
# nothing that needs the packages is ever skipped.

ensure_pip_venv() {
  local venv=$1 check=$3 needed_by=$4
  local -a pins
  read -r -a pins <<<"$2"

  pip_venv_installed() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import sys
from importlib.metadata import version
$check
sys.exit(0 if all(version(p.split('==')[0]) == p.split('==')[1] for p in sys.argv[1:]) else 1)" "${pins[@]}" 2>/dev/null
  }

  pip_venv_installed && return 0

  pip_venv_fail() {
    echo "error: $*" >&2
    echo "       $needed_by needs ${pins[*]} in $venv and does not run without it" >&2
    exit 1
  }

  pip_venv_apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || pip_venv_fail "need the Debian packages $* and cannot install them without root (run: apt-get install $*)"
      sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || pip_venv_fail "need $* (no apt-get here to install them)"
    echo "installing missing packages: $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq || pip_venv_fail "apt-get update failed"
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null || pip_venv_fail "apt-get install $* failed"
  }

  # Debian's python3 lacks venv (ensurepip) without python3-venv.
  command -v python3 >/dev/null 2>&1 || pip_venv_apt_install python3 python3-venv
  python3 -c 'import venv, ensurepip' 2>/dev/null || pip_venv_apt_install python3-venv

  echo "installing ${pins[*]} into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || pip_venv_fail "python3 -m venv $venv failed"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${pins[@]}" \
    || pip_venv_fail "pip install ${pins[*]} failed (is PyPI reachable?)"
  pip_venv_installed || pip_venv_fail "${pins[*]} were installed into $venv but do not import"
}
