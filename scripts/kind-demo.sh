#!/usr/bin/env bash
# `make kind-demo`: wasm-exec on a local kind cluster, end to end.
#
# Steps: build the three images if they are missing (scripts/build-images.sh); create the
# kind cluster from k8s/kind.yaml unless it exists; `kind load docker-image` the images (and
# kubo's); in namespace $NAMESPACE apply k8s/ipfs.yaml and wait for it; `ipfs add` the files
# of host/wasm through `kubectl exec`; create the ConfigMap wasm-exec-job-template from
# k8s/job.yaml; apply k8s/coordinator.yaml (two replicas, one leader); wait until the
# leader has published the three sample tasks' results (one Job each, deleted once
# collected), show them and the events on the Jobs, or give up after FOLLOW_SECONDS.
#
# Needs docker (with a running engine), kind and kubectl. Environment:
#   CLUSTER (wasm-exec, as named in k8s/kind.yaml), NAMESPACE (wasm-exec),
#   FOLLOW_SECONDS (300). `make kind-down` deletes the cluster; `make logs` follows the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-wasm-exec}
NAMESPACE=${NAMESPACE:-wasm-exec}
FOLLOW_SECONDS=${FOLLOW_SECONDS:-300}
CONTEXT=kind-$CLUSTER
IMAGES=(executor-demo/executor:demo executor-demo/fetcher:demo executor-demo/coordinator:demo)
KUBO_IMAGE=ipfs/kubo:v0.32.1

die() {
  echo "error: kind-demo: $*" >&2
  exit 1
}
step() { echo "==> $*"; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (needed: docker with a running engine, kind, kubectl). $2"
}
need docker "See https://docs.docker.com/engine/install/"
need kind "See https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "See https://kubernetes.io/docs/tasks/tools/"
docker info >/dev/null 2>&1 || die "docker is installed but 'docker info' fails: no running Docker engine"

k() { kubectl --context "$CONTEXT" --namespace "$NAMESPACE" "$@"; }

# 1. Images.
missing=()
for image in "${IMAGES[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "building the missing images: ${missing[*]}"
  scripts/build-images.sh
fi
if ! docker image inspect "$KUBO_IMAGE" >/dev/null 2>&1; then
  step "pulling $KUBO_IMAGE"
  docker pull "$KUBO_IMAGE" || die "cannot pull $KUBO_IMAGE (the in-cluster IPFS node)"
fi

# 2. The cluster.
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  step "kind cluster $CLUSTER exists"
else
  step "creating kind cluster $CLUSTER from k8s/kind.yaml"
  kind create cluster --name "$CLUSTER" --config k8s/kind.yaml --wait 180s \
    || die "kind create cluster failed"
fi
kubectl --context "$CONTEXT" get nodes >/dev/null || die "cannot reach the cluster through context $CONTEXT"

step "loading images into the cluster"
kind load docker-image --name "$CLUSTER" "${IMAGES[@]}" "$KUBO_IMAGE" || die "kind load docker-image failed"

kubectl --context "$CONTEXT" create namespace "$NAMESPACE" --dry-run=client -o yaml \
  | kubectl --context "$CONTEXT" apply -f - >/dev/null

# 3. IPFS, and the sample files in it.
step "applying k8s/ipfs.yaml in namespace $NAMESPACE"
k apply -f k8s/ipfs.yaml
k rollout status deployment/ipfs --timeout=180s || die "the IPFS node did not become ready (k describe pod -l app.kubernetes.io/name=ipfs)"

step "adding host/wasm's modules and inputs to the IPFS node"
fetcher=${TARGET_DIR:-target}/debug/fetcher
for f in host/wasm/*.wasm host/wasm/*-input.json; do
  cid=$(k exec -i deployment/ipfs -c ipfs -- ipfs add -Q --pin=true <"$f" | tr -d '\r') \
    || die "ipfs add $f failed"
  expected=""
  [ -x "$fetcher" ] && expected=$("$fetcher" cid "$f" 2>/dev/null || true)
  if [ -n "$expected" ] && [ "$expected" != "$cid" ]; then
    echo "warning: $f was added as $cid, but fetcher cid computes $expected" >&2
  fi
  printf '    %-28s %s\n' "$f" "$cid"
done

# 4. The Job template, and the coordinator.
step "creating ConfigMap wasm-exec-job-template from k8s/job.yaml"
k create configmap wasm-exec-job-template --from-file=job.yaml=k8s/job.yaml --dry-run=client -o yaml \
  | k apply -f -

existed=false
k get deployment/wasm-exec-coordinator >/dev/null 2>&1 && existed=true
step "applying k8s/coordinator.yaml"
# The ledger's custom resource first: the coordinators record every task as a WasmTask.
kubectl --context "$CONTEXT" apply -f k8s/crd.yaml
kubectl --context "$CONTEXT" wait --for condition=established --timeout=60s crd/wasmtasks.wasm-exec.io
k apply -f k8s/coordinator.yaml
# A new template or image is only picked up by a new pod.
$existed && k rollout restart deployment/wasm-exec-coordinator

# 5. The results: the leader prints one JSON line per task on stdout.
step "waiting for the sample tasks' results (up to ${FOLLOW_SECONDS}s)"
deadline=$((SECONDS + FOLLOW_SECONDS))
expected=('"task_id":"fib"' '"task_id":"affine"' '"task_id":"add"')
results=""
while [ $SECONDS -lt $deadline ]; do
  results=$(k logs -l app.kubernetes.io/name=wasm-exec-coordinator --tail=-1 2>/dev/null | grep '^{"task_id"' || true)
  done_count=0
  for id in "${expected[@]}"; do
    grep -q "$id" <<<"$results" && done_count=$((done_count + 1))
  done
  [ "$done_count" -eq ${#expected[@]} ] && break
  sleep 3
done
echo "$results"
echo
step "events on the task Jobs"
k get events --field-selector involvedObject.kind=Job --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 || true
step "the Lease (its holder is the leader)"
k get lease wasm-exec-coordinator -o jsonpath='{.spec.holderIdentity}{"\n"}' 2>/dev/null || true

absent=0
for id in "${expected[@]}"; do
  grep -q "$id" <<<"$results" || { echo "kind-demo: no result for ${id#*:} within ${FOLLOW_SECONDS}s" >&2; absent=1; }
done
if [ $absent -ne 0 ]; then
  echo "kind-demo: 'make logs' follows the coordinators and the task pods; 'kubectl -n $NAMESPACE describe job -l app.kubernetes.io/managed-by=wasm-exec-coordinator' shows a running Job's story" >&2
  exit 1
fi
if grep -v '"status":"ok"' <<<"$results" | grep -q .; then
  echo "kind-demo: a task did not end ok (above)" >&2
  exit 1
fi
echo "kind-demo: fib, affine and add ran as Jobs and their results were published; 'make kind-down' removes the cluster"
