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
# shellcheck source=scripts/pip-venv.sh
. scripts/pip-venv.sh

ensure_pip_venv "${VALIDATE_VENV:-target/validate-venv}" kubernetes-validate 1.37.0 \
  'import kubernetes_validate.utils  # the package and its dependencies import' \
  "make manifests-check"
