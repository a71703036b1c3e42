#!/usr/bin/env python3
"""Lints and renders charts/order-service with real Helm (helm-python-sdk,
Helm v4 as a library) for the default and a production-like values file,
validates every rendered manifest against the Kubernetes schemas
(kubernetes-validate) and checks the properties SREs rely on."""
import pathlib
import sys

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "order-service"
KUBE_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def check(cond, msg):
    if not cond:
        fail(msg)


# The chart has no default secret: the "default values" render gives one.
DEFAULT_SECRET = {"secrets": {"jwtSecret": "chart-check-secret-0123456789-0123456789"}}


def render(values_file, values=None):
    if values is None:
        values = yaml.safe_load(values_file.read_text()) if values_file else DEFAULT_SECRET
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            fail(f"helm lint ({values_file and values_file.name}): {m}")
    for e in report.get("errors", []):
        fail(f"helm lint ({values_file and values_file.name}): {e}")
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="shop", namespace="orders", is_install=True)
    docs = []
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return values, docs


def validate(docs, label):
    for doc in docs:
        kind = doc.get("kind")
        name = doc.get("metadata", {}).get("name")
        if kind in CRD_KINDS:
            check(doc.get("apiVersion") == "monitoring.coreos.com/v1", f"{label}: {kind} apiVersion")
            check(bool(doc.get("spec")), f"{label}: {kind} {name} has a spec")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{label}: {kind} {name}: {e.message}")
        except Exception as e:  # noqa: BLE001 - report any validator failure
            fail(f"{label}: {kind} {name}: {e}")


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def properties(values, docs, label, production):
    deployments = {d["metadata"]["name"].rsplit("-", 1)[-1]: d for d in by_kind(docs, "Deployment")}
    check(set(deployments) == {"api", "relay"}, f"{label}: api and relay Deployments ({list(deployments)})")
    shutdown = int(values.get("config", {}).get("SHUTDOWN_TIMEOUT_SECS", 20))
    for comp, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        check(spec["securityContext"].get("runAsNonRoot") is True, f"{label}: {comp} runs as non-root")
        check(c["securityContext"].get("readOnlyRootFilesystem") is True, f"{label}: {comp} read-only root fs")
        check(spec["terminationGracePeriodSeconds"] > shutdown, f"{label}: {comp} grace > shutdown timeout")
        check("livenessProbe" in c and "readinessProbe" in c, f"{label}: {comp} has probes")
        check(c["readinessProbe"]["httpGet"]["path"] == "/health/ready", f"{label}: {comp} readiness path")
    services = [d["metadata"]["name"] for d in by_kind(docs, "Service")]
    check(any(n.endswith("-api") for n in services), f"{label}: a Service for the api")
    check(len(by_kind(docs, "PodDisruptionBudget")) == 2, f"{label}: two PodDisruptionBudgets")
    jobs = by_kind(docs, "Job")
    check(len(jobs) == 1, f"{label}: one migration Job")
    for job in jobs:
        hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        check("pre-install" in hooks and "pre-upgrade" in hooks, f"{label}: migration Job is a pre-install/upgrade hook")
        check(job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "migrate", f"{label}: Job migrates")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    rules = by_kind(docs, "PrometheusRule")
    if production:
        check(len(hpas) == 2, f"{label}: HPAs for api and relay")
        check(len(by_kind(docs, "ServiceMonitor")) == 1, f"{label}: a ServiceMonitor")
        check(len(rules) == 1, f"{label}: a PrometheusRule")
        alerts = yaml.safe_load((CHART / "files" / "alerts.yml").read_text())
        check(rules and rules[0]["spec"] == alerts, f"{label}: PrometheusRule holds the shared alerts file")
        check(not by_kind(docs, "Secret"), f"{label}: existingSecret means no chart Secret")
    else:
        check(not hpas and not rules, f"{label}: defaults have no HPA and no PrometheusRule")


def refuses_to_render(values, needle, label):
    """Rendering with `values` must fail with a message containing `needle`."""
    try:
        helm.Chart.load(str(CHART)).render(values, name="shop", namespace="orders", is_install=True)
    except Exception as e:  # helm-python-sdk raises its own error type
        check(needle in str(e), f"{label}: the error names {needle}: {e}")
        return
    fail(f"{label}: the chart rendered")


def main():
    refuses_to_render({}, "secrets.jwtSecret", "no JWT secret")
    refuses_to_render({"secrets": {"jwtSecret": "dev-secret-change-me"}}, "32 bytes", "short JWT secret")
    for values_file, production in [(None, False), (CHART / "ci" / "production-values.yaml", True)]:
        label = values_file.name if values_file else "default values"
        values, docs = render(values_file)
        print(f"{label}: rendered {len(docs)} manifests: {sorted({d['kind'] for d in docs})}")
        validate(docs, label)
        properties(values, docs, label, production)
    if failures:
        print(f"{len(failures)} chart check(s) failed")
        sys.exit(1)
    print("chart checks passed")


if __name__ == "__main__":
    main()
