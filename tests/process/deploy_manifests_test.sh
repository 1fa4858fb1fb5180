#!/usr/bin/env bash
# Offline checks of the deployment files under deploy/:
#   - yamllint --strict (repo .yamllint) on every YAML file;
#   - structure, with PyYAML: every Kubernetes object has apiVersion/kind/metadata.name;
#     the Deployment asks for a GPU, probes gRPC health on the server's own port, gives
#     SIGTERM at least FLEXGS_DRAIN_SECONDS (+ preStop), runs non-root; the Services,
#     HPA and PDB select/target it; kustomization lists every manifest; compose has the
#     GPU reservation, the health probe and a stop grace above the drain; Prometheus
#     loads the alerts, whose expressions use only metrics the server exports;
#   - `kubectl kustomize` renders deploy/k8s when kubectl exists, and
#     `kubectl apply --dry-run=client` runs when a cluster answers (skipped otherwise).
#   deploy_manifests_test.sh [REPO_ROOT]
set -euo pipefail
ROOT=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
cd "$ROOT"

command -v yamllint > /dev/null || { echo "SKIP: yamllint not installed (deploy/install-deps.sh)"; exit 77; }
python3 -c 'import yaml' 2> /dev/null ||
  { echo "SKIP: PyYAML (python3-yaml) not installed (deploy/install-deps.sh)"; exit 77; }

mapfile -t FILES < <(find deploy -name '*.yaml' -o -name '*.yml' | sort)
[[ ${#FILES[@]} -ge 8 ]] || { echo "FAIL: only ${#FILES[@]} YAML files under deploy/: ${FILES[*]}" >&2; exit 1; }
yamllint --strict -c .yamllint "${FILES[@]}" || { echo "FAIL: yamllint" >&2; exit 1; }
echo "yamllint: ${#FILES[@]} files clean"

python3 - "$ROOT" <<'EOF'
import os, re, sys
import yaml

root = sys.argv[1]
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def load_all(path):
    with open(os.path.join(root, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def seconds(text):
    """Compose durations: 35s, 1m30s, 500ms."""
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def subset(small, big):
    return bool(small) and all(big.get(k) == v for k, v in small.items())


# ---- Kubernetes ----
k8s_dir = "deploy/k8s"
manifests = sorted(f for f in os.listdir(os.path.join(root, k8s_dir))
                   if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
objects = []
for name in manifests:
    for doc in load_all(os.path.join(k8s_dir, name)):
        where = f"{name}: {doc.get('kind')}"
        check(isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], f"{where}: no apiVersion")
        check(isinstance(doc.get("kind"), str) and doc["kind"], f"{name}: a document without kind")
        check(isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name"), f"{where}: no metadata.name")
        objects.append(doc)
kust = load_all(os.path.join(k8s_dir, "kustomization.yaml"))[0]
check(sorted(kust.get("resources", [])) == manifests,
      f"kustomization.yaml resources {sorted(kust.get('resources', []))} != manifests {manifests}")


def of_kind(kind):
    return [o for o in objects if o.get("kind") == kind]


deployments = of_kind("Deployment")
check(len(deployments) == 1, f"want one Deployment, found {len(deployments)}")
dep = deployments[0] if deployments else {}
dep_name = dep.get("metadata", {}).get("name")
check(dep.get("apiVersion") == "apps/v1", "Deployment apiVersion is not apps/v1")
spec = dep.get("spec", {})
pod = spec.get("template", {})
pod_labels = pod.get("metadata", {}).get("labels", {})
pod_spec = pod.get("spec", {})
check(subset(spec.get("selector", {}).get("matchLabels", {}), pod_labels),
      "Deployment selector does not match its pod template labels")
containers = pod_spec.get("containers", [])
server = next((c for c in containers
               if any(p.get("name") == "grpc" for p in c.get("ports", []))), None)
if check(server is not None, "no container with a port named grpc"):
    env = {e["name"]: e.get("value") for e in server.get("env", [])}
    ports = {p.get("name"): p.get("containerPort") for p in server.get("ports", [])}
    grpc_port = ports["grpc"]
    check(str(grpc_port) == str(env.get("FLEXGS_PORT")),
          f"container port grpc {grpc_port} != FLEXGS_PORT {env.get('FLEXGS_PORT')}")
    check(str(ports.get("metrics")) == str(env.get("FLEXGS_METRICS_PORT")),
          f"container port metrics {ports.get('metrics')} != FLEXGS_METRICS_PORT {env.get('FLEXGS_METRICS_PORT')}")
    limits = server.get("resources", {}).get("limits", {})
    check(int(limits.get("nvidia.com/gpu", 0)) >= 1, "no nvidia.com/gpu limit")
    check("cpu" in server.get("resources", {}).get("requests", {}),
          "no CPU request (the HPA's CPU utilisation needs one)")
    check("memory" in limits, "no memory limit")
    for probe in ("livenessProbe", "readinessProbe"):
        grpc = server.get(probe, {}).get("grpc")
        if check(grpc is not None, f"{probe} is not a native gRPC probe"):
            check(grpc.get("port") == grpc_port, f"{probe} port {grpc.get('port')} != server port {grpc_port}")
    if "startupProbe" in server:
        check(server["startupProbe"].get("grpc", {}).get("port") == grpc_port,
              "startupProbe not gRPC on the server port")
    check(server.get("readinessProbe", {}).get("grpc", {}).get("service") == "flexgs.v1.SceneService",
          "readinessProbe does not ask for flexgs.v1.SceneService")
    drain = float(env.get("FLEXGS_DRAIN_SECONDS") or 10)  # the server's default
    pre_stop = server.get("lifecycle", {}).get("preStop", {})
    pre_stop_s = 0.0
    command = pre_stop.get("exec", {}).get("command", [])
    if command and command[0].endswith("sleep"):
        pre_stop_s = float(command[1])
    pre_stop_s += float(pre_stop.get("sleep", {}).get("seconds", 0))
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    check(grace >= drain + pre_stop_s,
          f"terminationGracePeriodSeconds {grace} < FLEXGS_DRAIN_SECONDS {drain} + preStop {pre_stop_s}")
    sc = {**pod_spec.get("securityContext", {}), **server.get("securityContext", {})}
    check(sc.get("runAsNonRoot") is True, "runAsNonRoot is not true")
    check(sc.get("runAsUser", 1) != 0, "runAsUser 0")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    mounts = {m["mountPath"]: m for m in server.get("volumeMounts", [])}
    scenes = mounts.get(env.get("FLEXGS_SCENES"))
    if check(scenes is not None, f"FLEXGS_SCENES {env.get('FLEXGS_SCENES')} is not a volume mount"):
        check(scenes.get("readOnly") is True, "scenes mount is not readOnly")
        volume = next((v for v in pod_spec.get("volumes", []) if v["name"] == scenes["name"]), {})
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim:
            check(any(o["metadata"]["name"] == claim for o in of_kind("PersistentVolumeClaim")),
                  f"PVC {claim} is not among the manifests")

services = of_kind("Service")
check(len(services) >= 2, "want a Service and a headless Service")
check(any(s["spec"].get("clusterIP") == "None" for s in services), "no headless Service (clusterIP: None)")
for s in services:
    name = s["metadata"]["name"]
    check(subset(s["spec"].get("selector", {}), pod_labels), f"Service {name} does not select the Deployment's pods")
    for p in s["spec"].get("ports", []):
        target = p.get("targetPort", p.get("port"))
        known = [q.get("name") for c in containers for q in c.get("ports", [])] + \
                [q.get("containerPort") for c in containers for q in c.get("ports", [])]
        check(target in known, f"Service {name} targetPort {target} is no container port")

hpas = of_kind("HorizontalPodAutoscaler")
if check(len(hpas) == 1, "want one HorizontalPodAutoscaler"):
    hpa = hpas[0]
    check(hpa["apiVersion"] == "autoscaling/v2", "HPA is not autoscaling/v2")
    ref = hpa["spec"].get("scaleTargetRef", {})
    check(ref.get("kind") == "Deployment" and ref.get("name") == dep_name and ref.get("apiVersion") == "apps/v1",
          f"HPA targets {ref}, not Deployment {dep_name}")
    check(2 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"].get("maxReplicas", 0),
          "HPA needs 2 <= minReplicas <= maxReplicas (one pod cannot survive a disruption)")
    check(len(hpa["spec"].get("metrics", [])) >= 1, "HPA has no metrics")

pdbs = of_kind("PodDisruptionBudget")
if check(len(pdbs) == 1, "want one PodDisruptionBudget"):
    pdb = pdbs[0]
    check(pdb["apiVersion"] == "policy/v1", "PDB is not policy/v1")
    check(subset(pdb["spec"].get("selector", {}).get("matchLabels", {}), pod_labels),
          "PDB does not select the Deployment's pods")
    check(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]),
          "PDB needs exactly one of minAvailable / maxUnavailable")

# ---- Compose ----
compose = load_all("deploy/compose.yaml")[0]
svc = compose.get("services", {})
srv = svc.get("flexgs-server", {})
check(srv.get("build", {}).get("dockerfile") == "docker/server.Dockerfile"
      and srv.get("build", {}).get("context") == "..",
      "compose flexgs-server is not built from docker/server.Dockerfile (context ..)")
devices = srv.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
check(any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and d.get("count") == 1
          for d in devices), "compose: no GPU reservation (driver nvidia, count 1, capabilities [gpu])")
test = srv.get("healthcheck", {}).get("test", [])
check(test[:2] == ["CMD", "/usr/local/bin/flexgs-health-probe"], f"compose healthcheck is not the probe: {test}")
cenv = srv.get("environment", {})
check(f"127.0.0.1:{cenv.get('FLEXGS_PORT')}" in test, "compose healthcheck does not probe FLEXGS_PORT")
check(any(str(p).endswith(f":{cenv.get('FLEXGS_PORT')}") for p in srv.get("ports", [])),
      "compose: gRPC port not published")
check(any(str(p).endswith(f":{cenv.get('FLEXGS_METRICS_PORT')}") for p in srv.get("ports", [])),
      "compose: metrics port not published")
check(seconds(srv.get("stop_grace_period", "10s")) > float(cenv.get("FLEXGS_DRAIN_SECONDS", 10)),
      "compose stop_grace_period does not exceed FLEXGS_DRAIN_SECONDS")
vols = [v for v in srv.get("volumes", []) if isinstance(v, dict) and v.get("target") == cenv.get("FLEXGS_SCENES")]
check(vols and vols[0].get("read_only") is True, "compose: scenes volume missing or not read-only")
check("client" in svc.get("client", {}).get("profiles", []), "compose: no client service under profile client")
check("flexgs-client" in " ".join(svc.get("client", {}).get("entrypoint", [])),
      "compose client does not run flexgs-client")
prom_vols = " ".join(str(v) for v in svc.get("prometheus", {}).get("volumes", []))
for f in ("prometheus/prometheus.yml", "prometheus/alerts.yml"):
    check(f in prom_vols and os.path.exists(os.path.join(root, "deploy", f)), f"compose prometheus does not mount {f}")

# ---- Prometheus ----
prom = load_all("deploy/prometheus/prometheus.yml")[0]
check(any(r.endswith("alerts.yml") for r in prom.get("rule_files", [])), "prometheus.yml does not load alerts.yml")
jobs = {j["job_name"]: j for j in prom.get("scrape_configs", [])}
job = jobs.get("flexgs-server", {})
sd = [c for c in job.get("dns_sd_configs", [])] + [c for c in job.get("static_configs", [])]
check(any(str(c.get("port")) == str(cenv.get("FLEXGS_METRICS_PORT")) or
          any(t.endswith(f":{cenv.get('FLEXGS_METRICS_PORT')}") for t in c.get("targets", [])) for c in sd),
      "prometheus.yml does not scrape the server's metrics port")

src = open(os.path.join(root, "server/server_metrics.cc")).read()
exported = set(re.findall(r'\.Name\("([a-z_]+)"\)', src))
histograms = set(re.findall(r'BuildHistogram\(\)\s*\.Name\("([a-z_]+)"\)', src))
known = exported | {h + s for h in histograms for s in ("_bucket", "_sum", "_count")} | {"up"}
alerts = load_all("deploy/prometheus/alerts.yml")[0]
rules = [r for g in alerts.get("groups", []) for r in g.get("rules", [])]
used = set()
for r in rules:
    name = r.get("alert", "?")
    check(r.get("alert") and r.get("expr"), f"alert rule without alert/expr: {r}")
    check(r.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"{name}: no severity label")
    check(r.get("annotations", {}).get("summary"), f"{name}: no summary")
    for metric in re.findall(r"\b((?:flexgs|grpc_server)_[a-z0-9_]+|up)\s*[{\[]", r.get("expr", "")):
        used.add(metric)
        check(metric in known, f"{name}: metric {metric} is not exported by server/server_metrics.cc")
for metric in ("up", "grpc_server_handled_total", "flexgs_stream_stalls_cancelled_total",
               "flexgs_streams_rejected_total", "flexgs_stream_time_to_first_chunk_seconds_bucket"):
    check(metric in used, f"no alert on {metric}")

# ---- nginx template ----
conf = open(os.path.join(root, "deploy/nginx/flexgs.conf")).read()
for directive in ("grpc_pass", "keepalive", "http2", "grpc_read_timeout", "grpc_send_timeout", "grpc_buffer_size",
                  "grpc.health.v1.Health"):
    check(directive in conf, f"nginx flexgs.conf lacks {directive}")

if errors:
    print("FAIL:", *errors, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"structure: {len(objects)} Kubernetes objects, compose, Prometheus ({len(rules)} alerts), nginx: OK")
EOF

if command -v kubectl > /dev/null; then
  timeout 30 kubectl kustomize deploy/k8s > /dev/null || { echo "FAIL: kubectl kustomize deploy/k8s" >&2; exit 1; }
  echo "kubectl kustomize deploy/k8s: OK"
  set +e
  out=$(timeout 20 kubectl apply --dry-run=client --request-timeout=5s -k deploy/k8s 2>&1)
  rc=$?
  set -e
  no_cluster="connection refused|unable to connect|no such host|failed to download openapi|i/o timeout"
  no_cluster+="|Unauthorized|forbidden|no configuration|timed out"
  if [[ $rc == 0 ]]; then
    echo "kubectl apply --dry-run=client: OK"
  elif grep -Eqi "$no_cluster" <<< "$out" ||
       [[ $rc == 124 ]]; then
    echo "kubectl apply --dry-run=client: skipped (no cluster reachable)"
  else
    echo "FAIL: kubectl apply --dry-run=client: $out" >&2
    exit 1
  fi
else
  echo "kubectl: not installed, kustomize/dry-run skipped"
fi
echo "PASS"
