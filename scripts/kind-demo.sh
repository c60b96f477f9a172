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
# With KUEUE=1 (`make kind-demo KUEUE=1`) the tasks go through Kueue: it is installed
# (release $KUEUE_VERSION, from GitHub: the kind node pulls its image), k8s/kueue/queues.yaml
# is applied (a quota for 4 tasks), and the coordinators run with
# COORDINATOR_QUEUE_NAME=wasm-exec and COORDINATOR_CONCURRENCY=8; the Workloads are shown
# at the end. Without it, a coordinator left queued by an earlier KUEUE=1 run is set back.
#
# Needs docker (with a running engine), kind and kubectl. Environment:
#   CLUSTER (wasm-exec, as named in k8s/kind.yaml), NAMESPACE (wasm-exec),
#   FOLLOW_SECONDS (300), KUEUE (unset), KUEUE_VERSION (v0.13.0). `make kind-down` deletes the cluster; `make logs` follows the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-wasm-exec}
NAMESPACE=${NAMESPACE:-wasm-exec}
FOLLOW_SECONDS=${FOLLOW_SECONDS:-300}
CONTEXT=kind-$CLUSTER
IMAGES=(executor-demo/executor:demo executor-demo/fetcher:demo executor-demo/coordinator:demo)
KUBO_IMAGE=ipfs/kubo:v0.32.1
KUEUE=${KUEUE:-}
KUEUE_VERSION=${KUEUE_VERSION:-v0.13.0}
KUEUE_MANIFESTS=https://github.com/kubernetes-sigs/kueue/releases/download/$KUEUE_VERSION/manifests.yaml

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
case "$KUEUE" in
  "" | 0) KUEUE="" ;;
  1)
    [ "$NAMESPACE" = wasm-exec ] \
      || die "KUEUE=1 applies k8s/kueue/queues.yaml, whose LocalQueue is in namespace wasm-exec (NAMESPACE is $NAMESPACE)"
    ;;
  *) die "KUEUE must be 1 or unset (it is '$KUEUE')" ;;
esac

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

# 3b. Kueue, and its queues for the executor.
if [ -n "$KUEUE" ]; then
  step "installing Kueue $KUEUE_VERSION"
  kubectl --context "$CONTEXT" apply --server-side -f "$KUEUE_MANIFESTS" >/dev/null \
    || die "cannot apply $KUEUE_MANIFESTS (set KUEUE_VERSION to a Kueue release)"
  kubectl --context "$CONTEXT" -n kueue-system wait --for condition=available --timeout=300s \
    deployment/kueue-controller-manager || die "Kueue's controller did not become available (kubectl -n kueue-system get pods)"
  step "applying k8s/kueue/queues.yaml"
  # Kueue's webhook may take a moment after its Deployment is available.
  applied=false
  for _ in $(seq 1 20); do
    if kubectl --context "$CONTEXT" apply -f k8s/kueue/queues.yaml; then
      applied=true
      break
    fi
    sleep 3
  done
  $applied || die "cannot apply k8s/kueue/queues.yaml (is Kueue's webhook up? kubectl -n kueue-system get pods)"
fi

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
if [ -n "$KUEUE" ]; then
  step "the coordinators queue their Jobs in LocalQueue wasm-exec (concurrency 8, twice the quota)"
  k set env deployment/wasm-exec-coordinator COORDINATOR_QUEUE_NAME=wasm-exec COORDINATOR_CONCURRENCY=8
else
  # Unset by an earlier KUEUE=1 run's `set env`, if any (a no-op otherwise).
  k set env deployment/wasm-exec-coordinator COORDINATOR_QUEUE_NAME- COORDINATOR_CONCURRENCY- >/dev/null
fi

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
if [ -n "$KUEUE" ]; then
  step "Kueue's Workloads (one per task Job, gone with it)"
  k get workloads 2>/dev/null || true
  kubectl --context "$CONTEXT" get clusterqueue wasm-exec 2>/dev/null || true
fi
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
echo "kind-demo: fib, affine and add ran as Jobs${KUEUE:+ admitted by Kueue} and their results were published; 'make kind-down' removes the cluster"
