"""Checks rendered Kubernetes manifests (kubectl kustomize output) against what the examples
promise: the "restricted" Pod Security Standard for every pod, no service-account token,
secrets only as files, mcp-warden probed on its admin port, the policy from a ConfigMap and a
writable /tmp on a read-only root filesystem.

Usage: python check_manifests.py FILE...   (prints one line per workload; exit 1 on a
violation, with every violation listed)
"""

import sys

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
ADMIN_PORTS = {"admin", 9090}


def check_container(where, c, errors):
    sc = c.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{where}: allowPrivilegeEscalation must be false")
    if sc.get("privileged"):
        errors.append(f"{where}: privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        errors.append(f"{where}: capabilities.drop must contain ALL")
    if caps.get("add"):
        errors.append(f"{where}: capabilities.add {caps['add']}")
    if sc.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{where}: readOnlyRootFilesystem must be true")
    if sc.get("runAsUser") == 0:
        errors.append(f"{where}: runs as root")
    # A container's setting overrides the pod's.
    if sc.get("runAsNonRoot") is False:
        errors.append(f"{where}: runAsNonRoot is false")
    for e in c.get("env") or []:
        if (e.get("valueFrom") or {}).get("secretKeyRef"):
            errors.append(f"{where}: secret {e['name']} in the environment (mount it as a file)")
    for e in c.get("envFrom") or []:
        if e.get("secretRef"):
            errors.append(f"{where}: envFrom a Secret (mount it as a file)")


def check_warden(where, c, volumes, errors):
    args = c.get("args") or []
    if "--admin-listen=0.0.0.0:9090" not in args:
        errors.append(f"{where}: no --admin-listen=0.0.0.0:9090")
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = (c.get(kind) or {}).get("httpGet") or {}
        if probe.get("path") != path or probe.get("port") not in ADMIN_PORTS:
            errors.append(f"{where}: {kind} must be GET {path} on the admin port")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    policy = mounts.get("/etc/mcp-warden")
    if "--config=/etc/mcp-warden/warden.toml" not in args or not policy:
        errors.append(f"{where}: the policy must come from --config=/etc/mcp-warden/warden.toml")
    elif "configMap" not in volumes.get(policy["name"], {}):
        errors.append(f"{where}: /etc/mcp-warden is not a ConfigMap")
    tmp = mounts.get("/tmp")
    if not tmp or "emptyDir" not in volumes.get(tmp["name"], {}):
        errors.append(f"{where}: no writable emptyDir at /tmp")
    if not any(
        "secret" in volumes.get(m["name"], {}) and m.get("readOnly") for m in mounts.values()
    ):
        errors.append(f"{where}: no Secret mounted read-only as files")


def check(doc, errors):
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    pod = doc["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        errors.append(f"{name}: pod runAsNonRoot must be true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errors.append(f"{name}: pod seccompProfile must be RuntimeDefault")
    if psc.get("runAsUser") == 0:
        errors.append(f"{name}: pod runs as root")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            errors.append(f"{name}: {key}")
    if pod.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken must be false")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for v in volumes.values():
        if "hostPath" in v:
            errors.append(f"{name}: hostPath volume {v['name']}")
    containers = pod.get("initContainers", []) + pod["containers"]
    for c in containers:
        check_container(f"{name} container {c['name']}", c, errors)
        if c["name"] == "mcp-warden":
            check_warden(f"{name} container {c['name']}", c, volumes, errors)
    return f"{name}: {len(containers)} containers"


def main(paths):
    errors, seen = [], []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc and doc.get("kind") in WORKLOADS:
                    seen.append(check(doc, errors))
    for line in seen:
        print(line)
    if not seen:
        errors.append("no workloads found")
    for e in errors:
        print("violation:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
