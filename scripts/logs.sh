#!/usr/bin/env bash
# `make logs`: follows the coordinator's log and its task pods' logs (every pod labelled
# app.kubernetes.io/managed-by=wasm-exec-coordinator, all containers, each line prefixed
# with its pod and container). Task pods are picked up when this starts: run it again for
# pods started later. Ctrl-C stops it.
#
# Environment: CONTEXT (kind-wasm-exec; empty = kubectl's current context), NAMESPACE (wasm-exec).
set -euo pipefail

command -v kubectl >/dev/null 2>&1 || { echo "error: make logs needs kubectl, which is not installed" >&2; exit 1; }
CONTEXT=${CONTEXT-kind-wasm-exec}
NAMESPACE=${NAMESPACE:-wasm-exec}
k=(kubectl --namespace "$NAMESPACE")
[ -n "$CONTEXT" ] && k+=(--context "$CONTEXT")

if ! "${k[@]}" get deployment/wasm-exec-coordinator --request-timeout=10s >/dev/null 2>&1; then
  echo "error: make logs: no deployment/wasm-exec-coordinator in namespace $NAMESPACE (context ${CONTEXT:-current}), or the cluster is unreachable; 'make kind-demo' creates it" >&2
  exit 1
fi

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
"${k[@]}" logs -f deployment/wasm-exec-coordinator --prefix --pod-running-timeout=60s &
pids+=($!)
"${k[@]}" logs -f -l app.kubernetes.io/managed-by=wasm-exec-coordinator \
  --all-containers --prefix --ignore-errors --max-log-requests=20 &
pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
