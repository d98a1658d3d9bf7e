"""deploy/k8s: both overlays render, validate against the Kubernetes schemas offline,
and keep the security and operability properties the runbook promises."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
from deploy_support import (
    DEPLOY,
    OVERLAYS,
    REPO,
    SERVICE_PORTS,
    SERVICES,
    Obj,
    containers,
    find,
    one,
    pod_spec,
    workloads,
)
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from cardinsa_foundation.config import Settings

# The newest schemas kubernetes-validate ships; strict mode refuses unknown fields.
KUBERNETES_VERSION = "1.37.0"
APP_UID = 10001
SECRET_NAMES = {"cardinsa-app", "cardinsa-db-admin"}
RUNTIME_SECRETS = {
    "identity": {
        "CARDINSA_DATABASE_URL",
        "CARDINSA_DATABASE_PLATFORM_URL",
        "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY",
        "CARDINSA_SIGNING_KEY_ENCRYPTION_PREVIOUS_KEYS",
        "CARDINSA_PAGE_TOKEN_SECRET",
        "CARDINSA_GATEWAY_SECRET",
    },
    "company": {
        "CARDINSA_DATABASE_URL",
        "CARDINSA_DATABASE_PLATFORM_URL",
        "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY",
        "CARDINSA_PAGE_TOKEN_SECRET",
        "CARDINSA_GATEWAY_SECRET",
        "CARDINSA_SERVICE_API_KEY",
        "CARDINSA_WEBHOOK_SECRET_ENCRYPTION_KEY",
    },
    "core": {
        "CARDINSA_DATABASE_URL",
        "CARDINSA_DATABASE_PLATFORM_URL",
        "CARDINSA_SIGNING_KEY_ENCRYPTION_KEY",
        "CARDINSA_PAGE_TOKEN_SECRET",
        "CARDINSA_GATEWAY_SECRET",
        "CARDINSA_SERVICE_API_KEY",
        "CARDINSA_PERSONAL_DATA_KEY",
        "CARDINSA_PERSONAL_DATA_PREVIOUS_KEYS",
        "CARDINSA_PERSONAL_DATA_HASH_KEY",
    },
}
# Names of settings that hold secrets (by suffix: CARDINSA_ACCESS_TOKEN_TTL_S is not one).
SECRET_LOOKING_NAME = re.compile(
    r"(PASSWORD|SECRET|TOKEN|_KEY|DATABASE(_ADMIN|_PLATFORM)?_URL|CREDENTIALS?)$"
)
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def unhashed(name: str) -> str:
    """The generator's name of a generated object (dev) or the name itself (prod)."""
    return HASH_SUFFIX.sub("", name)


def config_value(objects: list[Obj], key: str) -> str:
    (config,) = [
        o
        for o in find(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("cardinsa-config-")
    ]
    value: str = config["data"][key]
    return value


def secret_refs(container: Obj) -> dict[str, tuple[str, str]]:
    """env name → (Secret name, key) of every secretKeyRef."""
    found = {}
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            found[env["name"]] = (ref["name"], ref["key"])
    return found


# ------------------------------------------------------------------ schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    problems = []
    for obj in rendered[overlay]:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{what}: {path}: {error.message}")
        except SchemaNotFoundError as error:
            problems.append(f"{what}: {error.message}")
    assert not problems, "\n".join(problems)


def test_the_validator_really_rejects_bad_objects() -> None:
    bad: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "x"}]}},
                 "replicaz": 1},
    }  # fmt: skip
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_expected_objects_exist(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    for name in (*SERVICES, "envoy"):
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "ServiceAccount", "NetworkPolicy"):  # fmt: skip
            one(objects, kind, name)
    for service in SERVICES:
        one(objects, "Job", f"{service}-migrate")
    namespace = {"dev": "cardinsa-dev", "prod": "cardinsa"}[overlay]
    (ns,) = find(objects, "Namespace")
    assert ns["metadata"]["name"] == namespace
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


# ----------------------------------------------------------------- security


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for workload in workloads(rendered[overlay]):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] > 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, name
        tmp_volumes = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
        for container in containers(workload):
            where = f"{name} container {container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["runAsNonRoot"] is True, where
            assert security.get("privileged", False) is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), f"{where}: {part}"
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp must be an emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_image_runs_as_the_images_user(rendered: dict[str, list[Obj]], overlay: str) -> None:
    images: dict[str, set[str]] = {}
    for workload in workloads(rendered[overlay]):
        if workload["metadata"]["labels"].get("app.kubernetes.io/component") == "database":
            continue
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsUser"] == APP_UID
        assert spec["securityContext"]["runAsGroup"] == APP_UID
        for container in containers(workload):
            images.setdefault(container["image"], set()).add(workload["metadata"]["name"])
    # One image for the services and the Jobs, the gateway's (with Envoy) for Envoy only.
    assert len(images) == 2, images
    (gateway,) = [i for i in images if i.rsplit("/", 1)[-1].startswith("cardinsa-gateway")]
    assert images[gateway] == {"envoy"}
    for image in images:
        if overlay == "prod":
            assert not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1]


# -------------------------------------------------------- services and probes


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_services_have_native_grpc_probes_and_drain(
    rendered: dict[str, list[Obj]], overlay: str, service: str
) -> None:
    objects = rendered[overlay]
    deployment = one(objects, "Deployment", service)
    grpc_port, metrics_port = SERVICE_PORTS[service]
    (container,) = containers(deployment)
    assert container["command"] == ["python", "-m", f"cardinsa_{service}.main"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(container[probe]) & {"grpc", "exec", "httpGet", "tcpSocket"} == {"grpc"}
        assert container[probe]["grpc"]["port"] == grpc_port
    readiness = container["readinessProbe"]["grpc"]["service"]
    assert readiness.startswith(f"cardinsa.{service}.v1."), readiness
    # The settings the process reads agree with the ports the manifests use.
    assert config_value(objects, f"CARDINSA_{service.upper()}_PORT") == str(grpc_port)
    assert config_value(objects, f"CARDINSA_{service.upper()}_METRICS_PORT") == str(metrics_port)
    # Termination: preStop sleep, then SIGTERM → NOT_SERVING, drain, stop with grace.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(config_value(objects, "CARDINSA_GRACE_PERIOD_S"))
    drain_delay = Settings(_env_file=None).drain_delay_s  # type: ignore[call-arg]
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pre_stop + drain_delay + grace
    assert "replicas" not in deployment["spec"]  # the HPA owns it


@pytest.mark.parametrize("service", SERVICES)
def test_readiness_names_a_service_of_the_contract(
    rendered: dict[str, list[Obj]], service: str
) -> None:
    protos = REPO / "protos" / "cardinsa" / service / "v1"
    if not protos.is_dir():
        pytest.skip(f"no protos for {service} yet")
    declared = {
        f"cardinsa.{service}.v1.{name}"
        for path in protos.glob("*.proto")
        for name in re.findall(r"^service\s+(\w+)", path.read_text(), flags=re.M)
    }
    container = containers(one(rendered["prod"], "Deployment", service))[0]
    assert container["readinessProbe"]["grpc"]["service"] in declared
    compose = (DEPLOY / "compose" / "compose.yaml").read_text()
    assert container["readinessProbe"]["grpc"]["service"] in compose


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_are_headless_with_named_ports(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    for name in (*SERVICES, "envoy"):
        service = one(objects, "Service", name)
        deployment = one(objects, "Deployment", name)
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= template_labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        container_ports = {
            p["name"]: p["containerPort"]
            for c in containers(deployment)
            for p in c.get("ports") or []
        }
        for port in service["spec"]["ports"]:
            assert container_ports[port["targetPort"]] == port["port"], (name, port)
        if name in SERVICES:
            assert service["spec"]["clusterIP"] == "None"
            assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_renders_its_config_and_drains(rendered: dict[str, list[Obj]], overlay: str) -> None:
    deployment = one(rendered[overlay], "Deployment", "envoy")
    spec = pod_spec(deployment)
    (render,) = spec["initContainers"]
    (envoy,) = spec["containers"]
    assert envoy["command"] == ["envoy"]
    config_path = envoy["args"][envoy["args"].index("--config-path") + 1]
    assert config_path in render["command"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    shared = {m["name"] for m in render["volumeMounts"]} & {
        m["name"] for m in envoy["volumeMounts"]
    }
    assert any(volumes[v]["emptyDir"].get("medium") == "Memory" for v in shared if v != "tmp")
    assert "exec" in envoy["readinessProbe"] and "exec" in envoy["lifecycle"]["preStop"]
    assert spec["terminationGracePeriodSeconds"] > float(envoy["lifecycle"]["preStop"]["exec"][
        "command"][-1])  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_statistics_are_scraped_like_the_services(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """The scrape annotations name the container's metrics port, which is the port
    the rendered bootstrap's stats listener uses, on the pod address."""
    objects = rendered[overlay]
    deployment = one(objects, "Deployment", "envoy")
    spec = pod_spec(deployment)
    (render,) = spec["initContainers"]
    (envoy,) = spec["containers"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    env = {e["name"]: e.get("value") for e in render["env"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert env["CARDINSA_GATEWAY_METRICS_PORT"] == str(ports["metrics"])
    assert config_value(objects, "CARDINSA_METRICS_HOST") == "0.0.0.0"  # noqa: S104
    for service in SERVICES:  # the services' annotations have the same keys
        service_annotations = one(objects, "Deployment", service)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert set(service_annotations) >= set(annotations)


# ------------------------------------------------------ migrations, HPA, PDB


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_one_migration_job_per_service(
    rendered: dict[str, list[Obj]], overlay: str, service: str
) -> None:
    job = one(rendered[overlay], "Job", f"{service}-migrate")
    (container,) = containers(job)
    assert container["command"] == ["python", "-m", f"cardinsa_{service}.cli", "migrate"]
    name, key = secret_refs(container)["CARDINSA_DATABASE_ADMIN_URL"]
    assert (unhashed(name), key) == ("cardinsa-db-admin", "CARDINSA_DATABASE_ADMIN_URL")
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "migration"
    # Job pods never match a Deployment's selector.
    for deployment in find(rendered[overlay], "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert not selector.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_and_pdb_per_deployment(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    for deployment in find(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        hpa = one(objects, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        if overlay == "prod":
            assert hpa["spec"]["minReplicas"] >= 2, name
        assert all(c["resources"]["requests"].get("cpu") for c in containers(deployment))
        pdb = one(objects, "PodDisruptionBudget", name)
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert pdb["spec"]["maxUnavailable"] == 1  # drains never blocked, even at 1 replica


# ------------------------------------------------------------------- secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_embedded(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    for workload in workloads(objects):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            for env in container.get("env") or []:
                if "value" in env:
                    assert not SECRET_LOOKING_NAME.search(env["name"]), f"{where}: {env['name']}"
            for source in container.get("envFrom") or []:
                assert "secretRef" not in source, f"{where}: explicit secretKeyRefs only"
    configs = find(objects, "ConfigMap")
    for config in configs:
        for key in config.get("data") or {}:
            assert not SECRET_LOOKING_NAME.search(key), f"ConfigMap key {key}"


def test_prod_creates_no_secret(rendered: dict[str, list[Obj]]) -> None:
    assert find(rendered["prod"], "Secret") == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_gets_only_its_secrets(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    referenced: dict[str, set[str]] = {}
    for service in SERVICES:
        (container,) = containers(one(objects, "Deployment", service))
        refs = secret_refs(container)
        assert set(refs) == RUNTIME_SECRETS[service], service
        assert "CARDINSA_DATABASE_ADMIN_URL" not in refs  # the owner role is for Jobs only
    for workload in workloads(objects):
        for container in containers(workload):
            for name, key in secret_refs(container).values():
                referenced.setdefault(name, set()).add(key)
    generated = {o["metadata"]["name"]: set(o.get("data") or {}) for o in find(objects, "Secret")}
    if overlay == "prod":
        assert set(referenced) == SECRET_NAMES
        runbook = (REPO / "docs" / "runbook.md").read_text()
        for name, keys in referenced.items():
            assert name in runbook
            for key in keys:
                assert key in runbook, f"the runbook must say how to create {name}/{key}"
    else:
        # Every reference resolves to a generated Secret that has the key.
        assert {unhashed(n) for n in referenced} == {*SECRET_NAMES, "postgres"}
        for name, keys in referenced.items():
            assert keys <= generated[name], name


def test_dev_secret_values_are_public_placeholders(rendered: dict[str, list[Obj]]) -> None:
    import base64

    for secret in find(rendered["dev"], "Secret"):
        for key, encoded in secret["data"].items():
            value = base64.b64decode(encoded).decode()
            assert "dev-only" in value and "not-secret" in value, key
    for path in (DEPLOY / "k8s").rglob("*.env"):
        if path.name == "config.env":
            continue
        assert path.name.endswith(".dev.env"), path
        assert path.read_text().startswith("# DEVELOPMENT ONLY"), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_referenced_exist(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    config_names = {c["metadata"]["name"] for c in find(objects, "ConfigMap")}
    for workload in workloads(objects):
        for container in containers(workload):
            for source in container.get("envFrom") or []:
                assert source["configMapRef"]["name"] in config_names
        for volume in pod_spec(workload).get("volumes") or []:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_names


def test_postgres_init_script_is_the_same_for_compose_and_k8s() -> None:
    k8s = DEPLOY / "k8s" / "overlays" / "dev" / "postgres" / "10-cardinsa-roles.sh"
    compose = DEPLOY / "compose" / "postgres-init" / "10-cardinsa-roles.sh"
    assert k8s.read_bytes() == compose.read_bytes()
    assert k8s.stat().st_mode & 0o111 and compose.stat().st_mode & 0o111


def test_every_service_has_a_cli_module_for_its_job() -> None:
    for service in SERVICES:
        package = REPO / "services" / service / f"cardinsa_{service}"
        if not (package / "cli.py").exists():
            pytest.skip(f"cardinsa_{service}.cli is not written yet")
        assert "migrate" in Path(package / "cli.py").read_text()
