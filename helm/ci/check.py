#!/usr/bin/env python3
"""Lints, renders and validates helm/reach offline, for default and full values.

Uses Helm's own Go SDK (PyPI `helm-python-sdk`) for lint, values-schema
validation and rendering, and `kubernetes-validate` for the rendered
manifests against the Kubernetes OpenAPI schemas. Writes each rendering's
config.json and token list to --out, for tests/helm_chart.rs to check with
the reach binary itself. Exits non-zero on any finding.

    pip install helm-python-sdk kubernetes-validate
    python3 helm/ci/check.py --out /tmp/reach-chart
"""

import argparse
import json
import pathlib
import sys

import helm_python
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "reach"
KUBE_VERSION = "1.30.0"
# Custom resources have no schema in kubernetes-validate: checked by shape.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def check_servicemonitor(doc):
    endpoints = doc.get("spec", {}).get("endpoints", [])
    assert endpoints and all("port" in e for e in endpoints), "ServiceMonitor needs endpoints"
    assert doc["spec"].get("selector", {}).get("matchLabels"), "ServiceMonitor needs a selector"


def run(name, values, out):
    problems = []
    report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    for message in report.get("messages", []):
        if message.get("severity", 0) >= 2:
            problems.append(f"lint: {message.get('path')}: {message.get('error')}")
    problems += [f"lint: {e}" for e in report.get("errors", []) or []]

    chart = helm_python.Chart.load(str(CHART))
    try:
        chart.validate_schema(values)
    except helm_python.HelmValuesError as e:
        problems.append(f"values schema: {e}")
        return problems, 0
    rendered = chart.render(values, name="reach", namespace="messaging", is_install=True)
    kinds = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kind = (doc.get("apiVersion"), doc.get("kind"))
            kinds.append(f"{kind[1]}/{doc['metadata']['name']}")
            try:
                if kind in CRDS:
                    check_servicemonitor(doc)
                else:
                    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except Exception as e:  # every kind of finding is reported
                problems.append(f"{path}: {kind[1]}: {e}")
            if kind == ("v1", "ConfigMap") and "config.json" in doc.get("data", {}):
                (out / f"{name}.config.json").write_text(doc["data"]["config.json"])
            if kind == ("v1", "Secret") and "tokens" in doc.get("stringData", {}):
                (out / f"{name}.tokens").write_text(doc["stringData"]["tokens"])
                if "token" in doc["stringData"]:
                    (out / f"{name}.token").write_text(doc["stringData"]["token"])
            if kind == ("v1", "ConfigMap") and "reach.json" in doc.get("data", {}):
                dashboard = json.loads(doc["data"]["reach.json"])
                assert dashboard["panels"], "the dashboard has panels"
    (out / f"{name}.kinds").write_text("\n".join(kinds) + "\n")
    print(f"{name}: {len(kinds)} manifests: {', '.join(kinds)}")
    return problems, len(kinds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    full = yaml.safe_load((ROOT / "ci" / "full-values.yaml").read_text())
    redis = yaml.safe_load((ROOT / "ci" / "redis-values.yaml").read_text())
    failed = False
    for name, values in [("default", {}), ("full", full), ("redis", redis)]:
        problems, _ = run(name, values, args.out)
        for p in problems:
            print(f"{name}: {p}", file=sys.stderr)
        failed |= bool(problems)
    # The schema must refuse what the chart cannot deploy.
    for bad in [{"tls": {"enabled": True}}, {"auth": {"tokens": [{"tenant": "Acme!", "tokenBlake3": "x"}]}},
                {"service": {"grpcPort": 0, "adminPort": 9464}}, {"replicas": 3},
                {"store": {"backend": "redis"}}, {"store": {"backend": "cassandra"}},
                {"store": {"backend": "redis", "redis": {"nodes": ["10.0.0.1:6379"]}}},
                {"webhooks": {"enabled": True}}]:
        try:
            helm_python.Chart.load(str(CHART)).validate_schema(bad)
            print(f"schema accepted bad values {bad}", file=sys.stderr)
            failed = True
        except helm_python.HelmValuesError:
            pass
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
