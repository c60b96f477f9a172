#!/usr/bin/env python3
"""Offline checks of the deployment files, for `make manifests-check` (part of `make test`).

Runs with the virtualenv that scripts/ensure-validate.sh makes; needs no network, no
cluster and no kubectl.

  scripts/check-manifests.py [FILE...]   default: k8s/*.yaml k8s/kueue/*.yaml ipfs/docker-compose.yml docker/*.Dockerfile
  scripts/check-manifests.py --with FILE...   the defaults and these (the Jobs the coordinator generates)

1. Every YAML document in k8s/*.yaml is validated against the upstream Kubernetes JSON
   schemas bundled by kubernetes-validate, in their strict form: an unknown or misspelled
   field, a wrong type or a missing required field fails, and so does a kind/apiVersion
   with no schema (kubernetes-validate alone only warns about that). kind's Cluster config
   (k8s/kind.yaml) is not a Kubernetes object: it is checked against a small strict schema
   here, and so are Kueue's objects (k8s/kueue/*.yaml: ResourceFlavor, ClusterQueue,
   LocalQueue of kueue.x-k8s.io/v1beta1), against small strict schemas of the fields
   Kueue documents that they use. Duplicate mapping keys fail everywhere (PyYAML would
   keep the last silently).
2. Policy: no manifest creates a Secret, nor a ConfigMap other than the Job template
   (wasm-exec-job-template); no cluster-wide RBAC; the coordinator's Role grants exactly
   the least-privilege rules below; every pod runs as non-root with seccomp RuntimeDefault,
   and every container drops ALL capabilities, forbids privilege escalation and has a
   read-only root file system; the project's images are started by their entrypoint (no
   `command`); every image has an explicit tag other than latest.
3. ipfs/docker-compose.yml parses (strictly) and publishes its ports on 127.0.0.1 only.
4. docker/*.Dockerfile: a rust:1-bookworm builder running `cargo build --release --locked
   -p CRATE`, a final stage running as user 65532, and an exec-form ENTRYPOINT.
"""

import glob
import os
import re
import sys

import jsonschema
import yaml
from referencing import Registry, Resource

from kubernetes_validate import utils as kv

# The API version the coordinator is built against (k8s-openapi's feature v1_33).
KUBERNETES_VERSION = "1.33.0"

JOB_TEMPLATE_CONFIGMAP = "wasm-exec-job-template"
PROJECT_IMAGES = ("executor-demo/",)

# The coordinator's Role, exactly: (apiGroup, resource, verb).
COORDINATOR_ROLE = "wasm-exec-coordinator"
COORDINATOR_RULES = {
    *(("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")),
    # The ledger: WasmTasks and their status; patch for the result cache's label.
    *(("wasm-exec.io", "wasmtasks", v) for v in ("create", "get", "list", "watch", "patch", "delete")),
    *(("wasm-exec.io", "wasmtasks/status", v) for v in ("get", "update")),
    *(("", "pods", v) for v in ("get", "list", "watch")),
    ("", "pods/log", "get"),
    *((g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")),
    # Leader election: kube-lease-manager reads, creates and patches the Lease.
    *(("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch")),
    # The task sources' cursors: one ConfigMap, read and updated by name, created once.
    *(("", "configmaps", v) for v in ("get", "update", "create")),
    # With Kueue: a waiting Job's Workload says why it waits.
    *(("kueue.x-k8s.io", "workloads", v) for v in ("get", "list")),
}
# Rules that may (and should) be limited to named objects: (apiGroup, resource) → names.
NAMED_RULES = {("", "configmaps"): {"wasm-exec-cursors"}}

# kind's Cluster config (kind.x-k8s.io/v1alpha4), the fields kind documents.
KIND_CLUSTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion", "name"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "featureGates": {"type": "object"},
        "runtimeConfig": {"type": "object"},
        "networking": {"type": "object"},
        "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
        "kubeadmConfigPatchesJSON6902": {"type": "array"},
        "containerdConfigPatches": {"type": "array", "items": {"type": "string"}},
        "containerdConfigPatchesJSON6902": {"type": "array", "items": {"type": "string"}},
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string"},
                    "labels": {"type": "object"},
                    "extraMounts": {"type": "array"},
                    "extraPortMappings": {"type": "array"},
                    "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
                    "kubeadmConfigPatchesJSON6902": {"type": "array"},
                },
            },
        },
    },
}

_QUANTITY = {"oneOf": [{"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"},
                       {"type": "integer", "minimum": 0}]}
_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}


def _kueue(kind, spec, required_spec=()):
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata"] + (["spec"] if required_spec else []),
        "properties": {
            "apiVersion": {"const": "kueue.x-k8s.io/v1beta1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {"name": _NAME, "namespace": _NAME, "labels": {"type": "object"},
                               "annotations": {"type": "object"}},
            },
            "spec": {"type": "object", "additionalProperties": False, "required": list(required_spec),
                     "properties": spec},
        },
    }


# Kueue's objects (kueue.x-k8s.io/v1beta1), the fields of its API reference these files use.
KUEUE_SCHEMAS = {
    "ResourceFlavor": _kueue("ResourceFlavor", {"nodeLabels": {"type": "object"},
                                                "nodeTaints": {"type": "array"},
                                                "tolerations": {"type": "array"}}),
    "ClusterQueue": _kueue("ClusterQueue", {
        "namespaceSelector": {"type": "object"},
        "queueingStrategy": {"enum": ["BestEffortFIFO", "StrictFIFO"]},
        "cohort": {"type": "string"},
        "preemption": {"type": "object"},
        "resourceGroups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["coveredResources", "flavors"],
            "properties": {
                "coveredResources": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "flavors": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["name", "resources"],
                    "properties": {"name": _NAME, "resources": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["name", "nominalQuota"],
                        "properties": {"name": {"type": "string"}, "nominalQuota": _QUANTITY,
                                       "borrowingLimit": _QUANTITY, "lendingLimit": _QUANTITY}}}}}},
            }}},
    }, required_spec=("resourceGroups",)),
    "LocalQueue": _kueue("LocalQueue", {"clusterQueue": _NAME}, required_spec=("clusterQueue",)),
}


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys in a mapping."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class Checker:
    def __init__(self):
        self.errors = []
        self.documents = 0

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    # -- Kubernetes manifests ------------------------------------------------------------

    def check_k8s_file(self, path):
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            self.error(path, f"not valid YAML: {e}")
            return
        if not docs:
            self.error(path, "no YAML document")
        for i, doc in enumerate(docs, 1):
            items = doc.get("items", []) if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            for obj in items:
                self.documents += 1
                self.check_object(path, i, obj)

    def check_object(self, path, index, obj):
        where = f"{path} (document {index})"
        if not isinstance(obj, dict):
            self.error(where, "not a mapping")
            return
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if not isinstance(kind, str) or not isinstance(api_version, str):
            self.error(where, "missing kind or apiVersion")
            return
        if api_version.startswith("kind.x-k8s.io/"):
            self.schema_errors(where, KIND_CLUSTER_SCHEMA, obj, Registry())
            return
        if api_version.startswith("kueue.x-k8s.io/"):
            schema = KUEUE_SCHEMAS.get(kind)
            if schema is None:
                self.error(where, f"no schema here for Kueue's kind {kind}")
            else:
                self.schema_errors(where, schema, obj, Registry())
            return
        name = (obj.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            self.error(where, f"{kind} without metadata.name")
            name = "?"
        where = f"{path}: {kind}/{name}"
        self.validate_kubernetes(where, obj)
        self.check_policy(where, obj)

    def validate_kubernetes(self, where, obj):
        """Strict validation against the bundled upstream schema of this kind and version."""
        kind, api_version = obj["kind"], obj["apiVersion"]
        # kubernetes-validate's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1.
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        schema_dir = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
        try:
            schema = kv.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
            definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", KUBERNETES_VERSION)
        except FileNotFoundError:
            self.error(where, f"no Kubernetes {KUBERNETES_VERSION} schema for kind {kind} in {api_version} "
                              "(a misspelled kind or apiVersion?)")
            return
        registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
        self.schema_errors(where, schema, obj, registry)

    def schema_errors(self, where, schema, obj, registry):
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            field = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            self.error(where, f"{field}: {e.message}")

    def check_policy(self, where, obj):
        kind, name = obj["kind"], obj["metadata"].get("name")
        if kind == "Secret":
            self.error(where, "manifests must not create Secrets")
        if kind == "ConfigMap" and name != JOB_TEMPLATE_CONFIGMAP:
            self.error(where, f"the only ConfigMap allowed is the Job template {JOB_TEMPLATE_CONFIGMAP} "
                              "(task modules and inputs travel by CID through IPFS)")
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            self.error(where, "no cluster-wide RBAC: the coordinator works in its own namespace")
        if kind == "Role" and name == COORDINATOR_ROLE:
            granted = set()
            for rule in obj.get("rules") or []:
                names = set(rule.get("resourceNames") or [])
                pairs = {(g, r) for g in rule.get("apiGroups") or [] for r in rule.get("resources") or []}
                if rule.get("nonResourceURLs") or any(not names <= NAMED_RULES.get(p, set()) for p in pairs):
                    self.error(where, "unexpected resourceNames/nonResourceURLs in a rule")
                for g in rule.get("apiGroups") or []:
                    for r in rule.get("resources") or []:
                        for v in rule.get("verbs") or []:
                            granted.add((g, r, v))
            fmt = lambda s: ", ".join(f"{g or 'core'}/{r}:{v}" for g, r, v in sorted(s))  # noqa: E731
            if granted - COORDINATOR_RULES:
                self.error(where, f"grants more than least privilege: {fmt(granted - COORDINATOR_RULES)}")
            if COORDINATOR_RULES - granted:
                self.error(where, f"misses what the coordinator needs: {fmt(COORDINATOR_RULES - granted)}")
        pod = pod_spec(obj)
        if pod is not None:
            self.check_pod(where, pod)

    def check_pod(self, where, pod):
        psc = pod.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            self.error(where, "the pod's securityContext.runAsNonRoot must be true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            self.error(where, "the pod's securityContext.seccompProfile.type must be RuntimeDefault")
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            cwhere = f"{where}: container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                self.error(cwhere, "securityContext.allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.error(cwhere, "securityContext.readOnlyRootFilesystem must be true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                self.error(cwhere, "securityContext.capabilities.drop must include ALL")
            if sc.get("privileged"):
                self.error(cwhere, "must not be privileged")
            image = c.get("image") or ""
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@" not in image and tag in ("", "latest"):
                self.error(cwhere, f"image {image!r} needs an explicit tag other than latest")
            if image.startswith(PROJECT_IMAGES) and "command" in c:
                self.error(cwhere, "the project's images start through their entrypoint: set args/env, not command")

    # -- docker compose ------------------------------------------------------------------

    def check_compose(self, path):
        self.documents += 1
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.load(f, Loader=StrictLoader)
        except (OSError, yaml.YAMLError) as e:
            self.error(path, f"not valid YAML: {e}")
            return
        services = doc.get("services") if isinstance(doc, dict) else None
        if not isinstance(services, dict) or not services:
            self.error(path, "no services mapping")
            return
        base = os.path.dirname(path)
        for name, svc in services.items():
            where = f"{path}: service {name}"
            if not isinstance(svc, dict) or not isinstance(svc.get("image"), str):
                self.error(where, "needs an image")
                continue
            for port in svc.get("ports") or []:
                if not (isinstance(port, str) and port.startswith("127.0.0.1:")):
                    self.error(where, f"port {port!r} must be published on 127.0.0.1 only")
            for vol in svc.get("volumes") or []:
                src = vol.split(":", 1)[0] if isinstance(vol, str) else None
                if src and src.startswith((".", "/")) and not os.path.exists(os.path.join(base, src)):
                    self.error(where, f"volume source {src} does not exist (relative to {base})")

    # -- Dockerfiles ---------------------------------------------------------------------

    def check_dockerfile(self, path):
        crate = os.path.basename(path).split(".")[0]
        with open(path, encoding="utf-8") as f:
            text = re.sub(r"\\\n", " ", f.read())
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
        if not froms or not re.match(r"FROM rust:1-bookworm AS builder$", froms[0], re.I):
            self.error(path, "the first stage must be `FROM rust:1-bookworm AS builder`")
        if len(froms) < 2:
            self.error(path, "needs a separate final stage")
        if f"cargo build --release --locked -p {crate}" not in re.sub(r"\s+", " ", text):
            self.error(path, f"must build with `cargo build --release --locked -p {crate}`")
        final = lines[lines.index(froms[-1]):] if froms else []
        users = [ln for ln in final if ln.upper().startswith("USER ")]
        if not users or not re.match(r"USER 65532(:65532)?$", users[-1]):
            self.error(path, "the final stage must run as USER 65532")
        entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
        if not entry or not entry[-1].split(None, 1)[1].startswith("["):
            self.error(path, "needs an exec-form ENTRYPOINT (the Job template never sets command)")


def pod_spec(obj):
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        return ((((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")) or {}
    return None


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    defaults = sorted(glob.glob("k8s/*.yaml")) + sorted(glob.glob("k8s/kueue/*.yaml")) + ["ipfs/docker-compose.yml"] + sorted(glob.glob("docker/*.Dockerfile"))
    if argv[:1] == ["--with"]:
        files = defaults + argv[1:]
    else:
        files = argv or defaults
    checker = Checker()
    counts = {}
    for path in files:
        before = checker.documents
        if path.endswith("docker-compose.yml") or path.endswith("compose.yaml"):
            checker.check_compose(path)
        elif path.endswith(".Dockerfile"):
            checker.documents += 1
            checker.check_dockerfile(path)
        else:
            checker.check_k8s_file(path)
        counts[path] = checker.documents - before
    for e in checker.errors:
        print(f"error: {e}", file=sys.stderr)
    summary = ", ".join(f"{p} ({n})" for p, n in counts.items())
    if checker.errors:
        print(f"manifests-check: {len(checker.errors)} error(s) in: {summary}", file=sys.stderr)
        return 1
    print(f"manifests-check: {checker.documents} documents OK (Kubernetes {KUBERNETES_VERSION} strict schemas, "
          f"policy): {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
