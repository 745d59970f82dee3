#!/usr/bin/env bash
# Render every kustomize target under deploy/k8s (base and each overlay) and validate the
# output offline:
#   - core kinds against the Kubernetes OpenAPI schemas, strictly (unknown fields are
#     errors), with kubernetes-validate, for every version in K8S_VERSIONS;
#   - ServiceMonitor (a CRD, not in the core schemas) against a small JSON schema below;
#   - any other kind is an error (a typo in `kind:` must not pass as "unknown, skipped");
#   - wiring the schemas cannot see: selectors that match no pod template, references to
#     ConfigMaps/Secrets/Services that are not rendered, probes on undeclared ports, a
#     termination grace period shorter than preStop + the node's drain timeout;
#     NetworkPolicies that select no pod or name a port the pods do not declare; a
#     secretKeyRef to a key the rendered Secret lacks; an env value or argument using
#     $(VAR) that the container does not define; the migration user's Secret mounted by
#     anything but a Job, or nodes that migrate at start-up beside a migration Job.
# Then it proves that it can fail: deliberately broken manifests must be rejected.
#
# Usage: deploy/k8s/validate.sh            (no arguments, no stdin, no network once the
#                                           venv exists; creating it needs PyPI)
# Env:   K8S_VERSIONS="1.29 latest"         Kubernetes versions to validate against.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/chat-k8s-venv"
k8s_versions="${K8S_VERSIONS:-1.29 latest}"
# Secrets that an overlay expects to exist in the cluster already (created out of band).
declare -A external_secrets=([prod]="chat-node-secrets chat-migrate-secrets chat-tls" [base]="chat-tls")

command -v kubectl >/dev/null || { echo "validate.sh: kubectl not found" >&2; exit 2; }

if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
  echo "== creating $venv (kubernetes-validate from PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31,<2'
fi

read -r -d '' validator <<'PY' || true
import functools, re, sys
import jsonschema, yaml
import kubernetes_validate.utils as kv

# The library re-reads the 1.8 MB definitions file for every object; read it once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

label, path, versions, external = sys.argv[1], sys.argv[2], sys.argv[3].split(), set(sys.argv[4].split())
versions = [kv.latest_version() if v == "latest" else v for v in versions]

DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
LABEL_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": STRMAP,
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"],
        "additionalProperties": False, "properties": {
            "key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
            "values": {"type": "array", "items": {"type": "string"}}}}}}}
# The part of the monitoring.coreos.com/v1 ServiceMonitor CRD that we use, strict.
SERVICE_MONITOR = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
            "namespace": {"type": "string"}, "labels": STRMAP, "annotations": STRMAP}},
        "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False, "properties": {
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "sampleLimit": {"type": "integer", "minimum": 0},
            "selector": LABEL_SELECTOR,
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "anyOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
                "properties": {
                    "port": {"type": "string"},
                    "targetPort": {"type": ["integer", "string"]},
                    "path": {"type": "string", "pattern": "^/"},
                    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                    "interval": DURATION, "scrapeTimeout": DURATION,
                    "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
                    "params": {"type": "object"},
                    "relabelings": {"type": "array", "items": {"type": "object"}},
                    "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                    "tlsConfig": {"type": "object"}, "bearerTokenSecret": {"type": "object"},
                    "basicAuth": {"type": "object"}, "followRedirects": {"type": "boolean"},
                    "enableHttp2": {"type": "boolean"}}}}}}}}
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR}

errors = []
def err(obj, msg):
    errors.append(f"ERROR {label}: {obj}: {msg}")

with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
if not docs:
    print(f"ERROR {label}: rendered nothing"); sys.exit(1)

def ident(d):
    return f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"

# 1. schemas
for d in docs:
    if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
        err(ident(d) if isinstance(d, dict) else repr(d)[:60], "needs apiVersion, kind and metadata.name"); continue
    crd = CRD_SCHEMAS.get((d["apiVersion"], d["kind"]))
    if crd is not None:
        for e in jsonschema.Draft202012Validator(crd).iter_errors(d):
            err(ident(d), f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}")
        continue
    for v in versions:
        try:
            kv.validate(d, v, strict=True)
        except kv.ValidationError as e:
            err(ident(d), f"k8s {e.version}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}")
            break
        except kv.SchemaNotFoundError:
            err(ident(d), f"no schema for {d['apiVersion']} {d['kind']} in Kubernetes {v} (typo, or a CRD this script does not know)")
            break

# 2. wiring
def ns(d):
    return (d.get("metadata") or {}).get("namespace", "")
names = {(d.get("kind"), ns(d), (d.get("metadata") or {}).get("name")) for d in docs if isinstance(d, dict)}
def exists(kind, namespace, name):
    return (kind, namespace, name) in names

def pod_template(d):
    spec = d.get("spec") or {}
    if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return spec.get("template") or {}
    if d.get("kind") == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    return None

templates = []  # (namespace, labels, owner, podspec)
for d in docs:
    t = pod_template(d) if isinstance(d, dict) else None
    if t is None:
        continue
    tlabels = (t.get("metadata") or {}).get("labels") or {}
    templates.append((ns(d), tlabels, d, t.get("spec") or {}))
    sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels")
    if sel and any(tlabels.get(k) != v for k, v in sel.items()):
        err(ident(d), f"spec.selector {sel} does not match its pod template labels {tlabels}")

def matches(selector, namespace):
    return [o for (n, l, o, _) in templates if n == namespace and selector and all(l.get(k) == v for k, v in selector.items())]

services = {}
for d in docs:
    k, n, spec = d.get("kind"), ns(d), d.get("spec") or {}
    if k == "Service" and spec.get("selector"):
        services[(n, d["metadata"]["name"])] = d
        if not matches(spec["selector"], n):
            err(ident(d), f"selector {spec['selector']} matches no pod template")
    if k == "PodDisruptionBudget":
        if not matches((spec.get("selector") or {}).get("matchLabels"), n):
            err(ident(d), "selector matches no pod template")
    if k == "HorizontalPodAutoscaler":
        ref = spec.get("scaleTargetRef") or {}
        if not exists(ref.get("kind"), n, ref.get("name")):
            err(ident(d), f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not rendered")
    if k == "Ingress":
        for rule in spec.get("rules") or []:
            for p in ((rule.get("http") or {}).get("paths")) or []:
                svc = ((p.get("backend") or {}).get("service")) or {}
                target = services.get((n, svc.get("name"))) or next((x for x in docs if x.get("kind") == "Service" and ns(x) == n and x["metadata"]["name"] == svc.get("name")), None)
                if target is None:
                    err(ident(d), f"backend service {svc.get('name')} is not rendered")
                elif "name" in (svc.get("port") or {}) and svc["port"]["name"] not in [pp.get("name") for pp in target["spec"].get("ports") or []]:
                    err(ident(d), f"backend port {svc['port']['name']} is not a port of Service/{svc.get('name')}")
        for t in spec.get("tls") or []:
            if t.get("secretName") and not exists("Secret", n, t["secretName"]) and t["secretName"] not in external:
                err(ident(d), f"TLS secret {t['secretName']} is neither rendered nor declared external")
    if k == "ServiceMonitor":
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        svcs = [x for x in docs if x.get("kind") == "Service" and ns(x) == n and sel and all(((x["metadata"].get("labels") or {}).get(a) == b) for a, b in sel.items())]
        if not svcs:
            err(ident(d), f"selector {sel} matches no Service's labels")
        for ep in spec.get("endpoints") or []:
            if "port" in ep and not any(ep["port"] in [pp.get("name") for pp in s["spec"].get("ports") or []] for s in svcs):
                err(ident(d), f"endpoint port {ep['port']!r} is not a named port of the selected Service")

for (n, _, owner, podspec) in templates:
    containers = (podspec.get("containers") or []) + (podspec.get("initContainers") or [])
    vol_refs = [("ConfigMap", (v.get("configMap") or {}).get("name")) for v in podspec.get("volumes") or [] if v.get("configMap")]
    vol_refs += [("Secret", (v.get("secret") or {}).get("secretName")) for v in podspec.get("volumes") or [] if v.get("secret")]
    for c in containers:
        refs = list(vol_refs)
        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef: refs.append(("ConfigMap", ef["configMapRef"].get("name")))
            if "secretRef" in ef: refs.append(("Secret", ef["secretRef"].get("name")))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf: refs.append(("ConfigMap", vf["configMapKeyRef"].get("name")))
            if "secretKeyRef" in vf: refs.append(("Secret", vf["secretKeyRef"].get("name")))
        for kind, name in refs:
            if not exists(kind, n, name) and not (kind == "Secret" and name in external):
                err(ident(owner), f"container {c.get('name')}: {kind} {name} is not rendered")
        ports = [p.get("name") for p in c.get("ports") or []]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = (((c.get(probe) or {}).get("httpGet")) or {}).get("port")
            if isinstance(port, str) and port not in ports:
                err(ident(owner), f"container {c.get('name')}: {probe} uses port {port!r}, not declared")
        # Grace period must cover preStop sleep + the node's drain bound.
        pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        sleep = int(pre[1]) if len(pre) == 2 and pre[0].endswith("sleep") and str(pre[1]).isdigit() else 0
        drain = None
        for kind, name in refs:
            if kind == "ConfigMap":
                cm = next((x for x in docs if x.get("kind") == "ConfigMap" and ns(x) == n and x["metadata"]["name"] == name), None)
                if cm and "CHAT_DRAIN_TIMEOUT_SECS" in (cm.get("data") or {}):
                    drain = int(cm["data"]["CHAT_DRAIN_TIMEOUT_SECS"])
        grace = podspec.get("terminationGracePeriodSeconds", 30)
        if drain is not None and owner.get("kind") != "Job" and grace < sleep + drain:
            err(ident(owner), f"terminationGracePeriodSeconds {grace} < preStop sleep {sleep} + drain timeout {drain}")

# NetworkPolicies: what they select exists, and the ports they open are declared.
def selected(selector, namespace):
    """Pod templates a LabelSelector (matchLabels and matchExpressions) selects."""
    found = []
    for (n, l, o, spec) in templates:
        if n != namespace:
            continue
        ok = all(l.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
        for e in selector.get("matchExpressions") or []:
            key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
            ok = ok and {"In": lambda: l.get(key) in values, "NotIn": lambda: l.get(key) not in values,
                         "Exists": lambda: key in l, "DoesNotExist": lambda: key not in l}[op]()
        if ok:
            found.append((o, spec))
    return found

for d in docs:
    if d.get("kind") != "NetworkPolicy":
        continue
    spec, n = d.get("spec") or {}, ns(d)
    sel = spec.get("podSelector") or {}
    if not sel:
        continue  # {}: every pod of the namespace
    pods = selected(sel, n)
    if not pods:
        err(ident(d), f"podSelector {sel} matches no pod template")
        continue
    declared = {p.get("name") for (_, ps) in pods for c in ps.get("containers") or [] for p in c.get("ports") or []}
    for rule in spec.get("ingress") or []:
        for port in rule.get("ports") or []:
            if isinstance(port.get("port"), str) and port["port"] not in declared:
                err(ident(d), f"ingress port {port['port']!r} is not a named port of the pods it selects")
        for peer in rule.get("from") or []:
            if "podSelector" in peer and "namespaceSelector" not in peer and peer["podSelector"] and not selected(peer["podSelector"], n):
                err(ident(d), f"ingress from podSelector {peer['podSelector']} matches no pod template")

def envfrom_names(n, c):
    """Variables a container gets from envFrom (set before its env entries)."""
    names = []
    for ef in c.get("envFrom") or []:
        kind = "ConfigMap" if "configMapRef" in ef else "Secret"
        ref = ef.get("configMapRef") or ef.get("secretRef") or {}
        obj = next((x for x in docs if x.get("kind") == kind and ns(x) == n and x["metadata"]["name"] == ref.get("name")), None)
        if obj:
            names += list((obj.get("data") or {}).keys()) + list((obj.get("stringData") or {}).keys())
    return names

VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
for (n, _, owner, podspec) in templates:
    for c in (podspec.get("containers") or []) + (podspec.get("initContainers") or []):
        defined = set(envfrom_names(n, c))
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = next((x for x in docs if x.get("kind") == "Secret" and ns(x) == n and x["metadata"]["name"] == ref.get("name")), None)
                keys = set((secret or {}).get("data") or {}) | set((secret or {}).get("stringData") or {})
                if secret is not None and ref.get("key") not in keys:
                    err(ident(owner), f"container {c.get('name')}: env {e.get('name')}: Secret {ref.get('name')} has no key {ref.get('key')!r}")
            for var in VAR_REF.findall(str(e.get("value") or "")):
                if var not in defined:
                    err(ident(owner), f"container {c.get('name')}: env {e.get('name')} uses $({var}), defined neither before it nor by envFrom")
            defined.add(e.get("name"))
        for arg in (c.get("args") or []) + (c.get("command") or []):
            for var in VAR_REF.findall(str(arg)):
                if var not in defined:
                    err(ident(owner), f"container {c.get('name')}: argument uses $({var}), which the container does not define")

# The migration Job alone holds the schema owner's credentials, and nodes beside it never
# migrate at start-up.
MIGRATE_SECRET = "chat-migrate-secrets"
migrate_jobs = [o for (_, _, o, ps) in templates if o.get("kind") == "Job"
                and any("migrate" in (c.get("args") or []) for c in ps.get("containers") or [])]
for (n, _, owner, podspec) in templates:
    containers = (podspec.get("containers") or []) + (podspec.get("initContainers") or [])
    mounts = [c for c in containers
              if any((ef.get("secretRef") or {}).get("name") == MIGRATE_SECRET for ef in c.get("envFrom") or [])
              or any(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == MIGRATE_SECRET for e in c.get("env") or [])]
    mounts += [v for v in podspec.get("volumes") or [] if (v.get("secret") or {}).get("secretName") == MIGRATE_SECRET]
    if mounts and owner.get("kind") != "Job":
        err(ident(owner), f"mounts {MIGRATE_SECRET} (the schema owner's credentials): only the migration Job may")
    if not migrate_jobs or owner.get("kind") != "Deployment":
        continue
    for c in containers:
        if c.get("name") != "chat-node":
            continue
        env = {}
        for ef in c.get("envFrom") or []:
            ref = ef.get("configMapRef") or {}
            cm = next((x for x in docs if x.get("kind") == "ConfigMap" and ns(x) == n and x["metadata"]["name"] == ref.get("name")), None)
            env.update((cm or {}).get("data") or {})
        env.update({e.get("name"): e.get("value") for e in c.get("env") or [] if "value" in e})
        if str(env.get("CHAT_MIGRATE_ON_START", "true")).lower() != "false":
            err(ident(owner), f"container chat-node migrates at start-up (CHAT_MIGRATE_ON_START is not false) beside the migration {ident(migrate_jobs[0])}")

for e in errors:
    print(e)
if errors:
    sys.exit(1)
kinds = sorted(ident(d) for d in docs)
print(f"OK   {label}: {len(docs)} objects valid (Kubernetes {', '.join(versions)}): {', '.join(kinds)}")
PY

# validate_target <kustomize dir> <label>: render + validate; non-zero on any problem.
# Written with explicit returns so it behaves the same inside `if` (where set -e is off).
validate_target() {
  local dir=$1 label=$2 out
  out=$(mktemp "$workdir/render.XXXXXX.yaml") || return 1
  if ! kubectl kustomize "$dir" >"$out" 2>"$out.err"; then
    echo "ERROR $label: kubectl kustomize $dir failed:"; sed 's/^/  /' "$out.err"; return 1
  fi
  "$venv/bin/python" -c "$validator" "$label" "$out" "$k8s_versions" "${external_secrets[$label]:-}" || return 1
}

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
start=$SECONDS
failed=0

echo "== rendering and validating deploy/k8s (Kubernetes: $k8s_versions)"
targets=("$here/base")
for d in "$here"/overlays/*/; do targets+=("${d%/}"); done
for dir in "${targets[@]}"; do
  validate_target "$dir" "$(basename "$dir")" || failed=1
done

echo "== self-check: each deliberately broken input must be rejected"
# broken_case <name> <text the error must contain>, manifests on stdin. Called with a
# `< <(...)` redirect rather than in a pipeline, so that `failed=1` reaches this shell.
broken_case() {
  local name=$1 expect=$2 dir="$workdir/broken-$1"
  mkdir -p "$dir"
  cat >"$dir/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [objects.yaml]
EOF
  cat >"$dir/objects.yaml"
  local log="$dir/log"
  if validate_target "$dir" "broken-$name" >"$log" 2>&1; then
    echo "FAIL self-check $name: a broken manifest PASSED validation:"; sed 's/^/  /' "$log"; failed=1
  elif ! grep -q -- "$expect" "$log"; then
    echo "FAIL self-check $name: rejected, but not for the planted mistake ($expect):"; sed 's/^/  /' "$log"; failed=1
  else
    echo "ok   self-check $name rejected: $(grep -m1 -- "$expect" "$log" | cut -c1-160)"
  fi
}
deployment_with() {  # a valid minimal Deployment with one line of spec replaced
  sed "s|^  replicas: 2$|$1|" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  replicas: 2
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers:
        - name: app
          image: example/app:1
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /readyz, port: http}}
EOF
}
broken_case deployment-type-error 'spec.replicas' < <(deployment_with '  replicas: "three"')
broken_case deployment-unknown-field "'replica' was unexpected" < <(deployment_with '  replica: 2')
broken_case unknown-kind 'no schema for apps/v1 Deploymnet' < <(deployment_with '  replicas: 2'; cat <<'EOF'
---
apiVersion: apps/v1
kind: Deploymnet
metadata: {name: typo}
spec: {}
EOF
)
broken_case service-selector 'matches no pod template' < <(deployment_with '  replicas: 2'; cat <<'EOF'
---
apiVersion: v1
kind: Service
metadata: {name: broken, labels: {app: broken}}
spec:
  selector: {app: brokn}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
)
broken_case servicemonitor-schema 'endpoints.0.interval' < <(deployment_with '  replicas: 2'; cat <<'EOF'
---
apiVersion: v1
kind: Service
metadata: {name: broken, labels: {app: broken}}
spec:
  selector: {app: broken}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: broken}}
  endpoints:
    - {port: http, interval: 15 seconds}
EOF
)

broken_case networkpolicy-selector 'matches no pod template' < <(deployment_with '  replicas: 2'; cat <<'EOF'
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken}
spec:
  podSelector: {matchLabels: {app: brokn}}
  policyTypes: [Ingress]
EOF
)
broken_case networkpolicy-port "ingress port 'metrics' is not a named port" < <(deployment_with '  replicas: 2'; cat <<'EOF'
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken}
spec:
  podSelector: {matchLabels: {app: broken}}
  policyTypes: [Ingress]
  ingress:
    - ports: [{port: metrics, protocol: TCP}]
EOF
)
broken_case secret-key "has no key 'REDIS_PASSWORD'" < <(cat <<'EOF'
apiVersion: v1
kind: Secret
metadata: {name: broken}
stringData: {REDIS_PASWORD: x}
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: app
          image: example/app:1
          env:
            - name: REDIS_PASSWORD
              valueFrom: {secretKeyRef: {name: broken, key: REDIS_PASSWORD}}
EOF
)
broken_case env-reference 'uses $(REDIS_ADDR)' < <(deployment_with '  replicas: 2' \
  | sed 's|^          ports: \[|          env: [{name: REDIS_URL, value: "redis://$(REDIS_ADDR)"}]\n          ports: [|')
broken_case migrate-secret-in-deployment 'only the migration Job may' < <(deployment_with '  replicas: 2' \
  | sed 's|^          ports: \[|          envFrom: [{secretRef: {name: chat-migrate-secrets}}]\n          ports: [|'; cat <<'EOF'
---
apiVersion: v1
kind: Secret
metadata: {name: chat-migrate-secrets}
stringData: {DATABASE_URL: "mysql://x"}
EOF
)
broken_case nodes-migrate-beside-job 'migrates at start-up' < <(cat <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: chat-node}
spec:
  selector: {matchLabels: {app: chat}}
  template:
    metadata: {labels: {app: chat}}
    spec:
      containers:
        - name: chat-node
          image: example/chat-node:1
          env: [{name: CHAT_MIGRATE_ON_START, value: "true"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - {name: migrate, image: example/chat-node:1, args: [migrate]}
EOF
)

echo "== done in $((SECONDS - start)) s"
if [ "$failed" -ne 0 ]; then
  echo "validate.sh: FAILED" >&2
  exit 1
fi
echo "validate.sh: all manifests valid, self-check rejected every broken input"
