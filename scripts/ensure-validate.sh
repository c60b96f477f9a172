#!/usr/bin/env bash
# Installs the Python packages the checks use, pinned, into a virtualenv under target/:
# kubernetes-validate, which bundles the upstream Kubernetes JSON schemas (strict variants
# included) for `make manifests-check`; cryptography (Ed25519) and rfc8785 (canonical JSON),
# the implementations the receipt tests check ours against (`make unit`). Nothing is
# fetched at check time.
# Does nothing when the pinned versions are already there. Fails loudly, naming the cause,
# when it cannot install: no check is ever skipped.
#
#   scripts/ensure-validate.sh          # prints nothing on success
#   VALIDATE_VENV=dir scripts/ensure-validate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/pip-venv.sh
. scripts/pip-venv.sh

ensure_pip_venv "${VALIDATE_VENV:-target/validate-venv}" \
  "kubernetes-validate==1.37.0 cryptography==46.0.3 rfc8785==0.1.4" \
  'import kubernetes_validate.utils, rfc8785  # the packages and their dependencies import
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
Ed25519PrivateKey.generate()' \
  "make manifests-check and make unit (the receipt tests)"
