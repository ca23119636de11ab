"""The Kubernetes manifests in deploy/k8s: each valid against the Kubernetes API's JSON
schemas (kubernetes-validate bundles them: no cluster, no kubectl, no network), and
consistent with each other, with the image (Dockerfile) and with the app."""

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.integrations.kubernetes.router import ADMISSION_PATH
from app.main import app
from tests.deploy.dockerfile import PROJECT_ROOT, Dockerfile

MANIFESTS = PROJECT_ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests are for (preStop's sleep action is on by default
# from 1.30) and the newest whose schemas the package carries.
VERSIONS = ["1.30", "1.37"]
# Environment variables that are no app setting but are read by the serving command.
PROCESS_VARIABLES = {"WEB_CONCURRENCY"}  # uvicorn's default for --workers

Resource = dict[str, Any]


def load(directory: Path) -> list[tuple[str, Resource]]:
    resources = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                resources.append((path.name, document))
    return resources


RESOURCES = load(MANIFESTS)


def one(kind: str, name: str | None = None) -> Resource:
    found = [
        resource
        for _, resource in RESOURCES
        if resource["kind"] == kind and name in (None, resource["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def app_config() -> Resource:
    """The app's own ConfigMap (the other holds Prometheus's scrape jobs)."""
    return one("ConfigMap", "readiness")


def only_container(resource: Resource) -> Resource:
    containers: list[Resource] = resource["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_specs() -> list[Resource]:
    return [one("Deployment")["spec"]["template"]["spec"], one("Job")["spec"]["template"]["spec"]]


def setting_names() -> set[str]:
    # pydantic-settings reads each field from the variable of its name (no prefix, any case).
    assert Settings.model_config.get("env_prefix", "") == ""
    return {name.upper() for name in Settings.model_fields}


def test_the_expected_resources_are_there() -> None:
    kinds = sorted(resource["kind"] for _, resource in RESOURCES)
    for kind in ("ConfigMap", "Deployment", "Job", "Secret", "Service"):
        assert kind in kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "resource",
    [resource for _, resource in RESOURCES],
    ids=[f"{name}:{resource['kind']}" for name, resource in RESOURCES],
)
def test_manifest_matches_the_kubernetes_schema(resource: Resource, version: str) -> None:
    # strict: unknown fields (a misspelt `readinesProbe`) fail too, as the API server would
    # refuse them.
    kubernetes_validate.validate(resource, version, strict=True)


def test_probes_ask_the_apps_health_routes() -> None:
    container = only_container(one("Deployment"))
    # The app's own OpenAPI document lists every route it serves (probes included).
    paths = app.openapi()["paths"]
    probes = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe, path in probes.items():
        action = container[probe]["httpGet"]
        assert action["path"] == path
        assert "get" in paths[path]
        assert action["port"] in ports or action["port"] in ports.values()


def test_service_reaches_the_port_the_image_serves_on(dockerfile: Dockerfile) -> None:
    deployment, service = one("Deployment"), one("Service")
    container = only_container(deployment)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (service_port,) = service["spec"]["ports"]
    target = service_port["targetPort"]
    container_port = ports[target] if isinstance(target, str) else target
    assert container_port in ports.values()
    assert container_port == int(dockerfile.option("--port")) == dockerfile.exposed_port

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # The migration pod never receives traffic.
    job_labels = one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items()


def test_the_deployment_runs_the_images_own_command(dockerfile: Dockerfile) -> None:
    container = only_container(one("Deployment"))
    # No command or args: the pod runs the Dockerfile's CMD, with its graceful-shutdown
    # timeout, and takes its worker count from WEB_CONCURRENCY.
    assert "command" not in container
    assert "args" not in container
    assert "--workers" not in dockerfile.cmd
    assert "WEB_CONCURRENCY" in app_config()["data"]


def test_the_job_migrates_with_the_deployments_image() -> None:
    job = one("Job")
    migrate = only_container(job)
    assert migrate["image"] == only_container(one("Deployment"))["image"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_environment_names_are_settings_the_app_reads() -> None:
    config_map, secret = app_config(), one("Secret")
    known = setting_names() | PROCESS_VARIABLES
    assert set(config_map["data"]) <= known
    assert set(secret["stringData"]) <= known

    for workload in (one("Deployment"), one("Job")):
        container = only_container(workload)
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] == config_map["metadata"]["name"]
        for variable in container.get("env", []):
            assert variable["name"] in known
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == secret["metadata"]["name"]
            assert reference["key"] in secret["stringData"]

    # The secrets come from the Secret, never from the ConfigMap. The audit signing key is
    # one of them: on a read-only root no key file could be made, and replicas generating
    # their own would each sign with another key.
    secrets = {"DATABASE_URL", "READINESS_BOOTSTRAP_ADMIN_KEY", "READINESS_AUDIT_SIGNING_KEY"}
    assert not secrets & set(config_map["data"])
    deployment_env = {var["name"] for var in only_container(one("Deployment"))["env"]}
    assert deployment_env == secrets
    assert {var["name"] for var in only_container(one("Job"))["env"]} == {"DATABASE_URL"}


def test_the_grace_period_covers_the_graceful_shutdown(dockerfile: Dockerfile) -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(dockerfile.option("--timeout-graceful-shutdown"))
    # The kubelet's clock starts before preStop; SIGKILL comes at the end of the period.
    assert pod["terminationGracePeriodSeconds"] >= pause + graceful + 5


def test_pods_run_as_the_images_user_on_a_read_only_root(dockerfile: Dockerfile) -> None:
    uid, _, gid = dockerfile.user.partition(":")
    for pod in pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["runAsGroup"] == int(gid)
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}
        assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}


def test_the_metrics_directory_is_a_fresh_writable_volume(dockerfile: Dockerfile) -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volume = mounts[dockerfile.env["PROMETHEUS_MULTIPROC_DIR"]]
    (declared,) = [candidate for candidate in pod["volumes"] if candidate["name"] == volume]
    assert "emptyDir" in declared


def test_the_secret_example_holds_only_placeholders() -> None:
    secret = one("Secret")
    assert "data" not in secret
    for name, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, f"{name} in the example Secret must be a placeholder"


def scrape_jobs() -> dict[str, Resource]:
    """Prometheus's scrape jobs for the service, by the path each scrapes."""
    (scrape_file,) = one("ConfigMap", "readiness-prometheus")["data"].values()
    jobs = yaml.safe_load(scrape_file)["scrape_configs"]
    by_path = {job["metrics_path"]: job for job in jobs}
    assert len(by_path) == len(jobs) == len({job["job_name"] for job in jobs})
    return by_path


def keeps(job: Resource) -> list[str]:
    return [
        rule["regex"] for rule in job["relabel_configs"] if rule.get("action", "replace") == "keep"
    ]


def test_prometheus_scrapes_each_metrics_route_as_the_app_serves_it() -> None:
    operations = {
        path: app.openapi()["paths"][path]["get"] for path in ("/metrics", "/metrics/systems")
    }
    jobs = scrape_jobs()
    assert jobs.keys() == operations.keys()
    for path, job in jobs.items():
        needs_key = bool(operations[path]["security"])
        assert ("authorization" in job) == needs_key, path
        if needs_key:
            # The key comes from a mounted Secret's file, never inline in a ConfigMap.
            authorization = job["authorization"]
            assert authorization["type"] == "Bearer"
            assert set(authorization) == {"type", "credentials_file"}
            assert operations[path]["x-required-role"] == "viewer"
        interval = job.get("scrape_interval", "1m")
        timeout = job.get("scrape_timeout", "10s")
        assert seconds(timeout) <= seconds(interval), path  # else Prometheus refuses the file

    # Both find the Service's pods by its name label and the port it serves on.
    service = one("Service")
    (port,) = service["spec"]["ports"]
    target = f"{service['metadata']['labels']['app.kubernetes.io/name']};{port['name']}"
    assert keeps(jobs["/metrics"]) == [target]
    assert keeps(jobs["/metrics/systems"]) == [target]
    # Request counts are per pod, so /metrics is scraped on each; every pod answers
    # /metrics/systems alike, so it is scraped once, through the Service.
    assert jobs["/metrics"]["kubernetes_sd_configs"] == [{"role": "endpoints"}]
    assert jobs["/metrics/systems"]["kubernetes_sd_configs"] == [{"role": "service"}]


def test_the_dashboard_reads_each_systems_series_from_the_systems_job() -> None:
    dashboard = json.loads((PROJECT_ROOT / "deploy" / "grafana" / "readiness.json").read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "systems_job"]
    assert variable["query"] == scrape_jobs()["/metrics/systems"]["job_name"]


def seconds(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


# The admission webhook (validating-webhook.yaml, docs/integrations/kubernetes.md).

ADMISSION_KINDS = {
    ("apps", "v1", "deployments"): "Fail",
    ("apps", "v1", "statefulsets"): "Fail",
    ("", "v1", "pods"): "Ignore",
}


def webhooks() -> list[Resource]:
    found: list[Resource] = one("ValidatingWebhookConfiguration", "readiness")["webhooks"]
    return found


def test_the_webhook_calls_the_apps_admission_route_through_the_service() -> None:
    operation = app.openapi()["paths"][ADMISSION_PATH]["post"]
    assert operation["x-required-role"] == "viewer"  # the key the API server sends
    service = one("Service")
    for webhook in webhooks():
        target = webhook["clientConfig"]["service"]
        assert target["path"] == ADMISSION_PATH
        assert target["name"] == service["metadata"]["name"]
        # HTTPS, which the API server insists on; the image serves HTTP on the Service's
        # port, so TLS terminates in front of it (the docs page says how).
        assert target["port"] == 443
        assert target["namespace"] == "readiness"
        assert "url" not in webhook["clientConfig"]


def test_the_webhook_gates_deployments_stateful_sets_and_pods_on_create_and_update() -> None:
    covered = {}
    for webhook in webhooks():
        assert webhook["failurePolicy"] in ("Fail", "Ignore")
        for rule in webhook["rules"]:
            assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
            assert rule["scope"] == "Namespaced"
            for group in rule["apiGroups"]:
                for version in rule["apiVersions"]:
                    for resource in rule["resources"]:
                        covered[(group, version, resource)] = webhook["failurePolicy"]
    # Workloads fail closed (an outage stops rollouts), pods open (an outage must not stop
    # controllers from replacing the pods of workloads already admitted).
    assert covered == ADMISSION_KINDS


def test_the_webhook_is_opt_in_per_namespace_and_safe_to_retry() -> None:
    for webhook in webhooks():
        selector = webhook["namespaceSelector"]
        assert selector["matchLabels"] == {"readiness/enforce": "true"}
        # Never the control plane's namespace nor the service's own: it cannot block itself.
        (exclusion,) = selector["matchExpressions"]
        assert exclusion["key"] == "kubernetes.io/metadata.name"
        assert exclusion["operator"] == "NotIn"
        assert {"kube-system", webhook["clientConfig"]["service"]["namespace"]} <= set(
            exclusion["values"]
        )
        assert "objectSelector" not in webhook
        # The endpoint records a gate check except on a dry run.
        assert webhook["sideEffects"] == "NoneOnDryRun"
        assert webhook["timeoutSeconds"] == 5
        assert webhook["admissionReviewVersions"] == ["v1"]
    names = [webhook["name"] for webhook in webhooks()]
    assert len(set(names)) == len(names)
