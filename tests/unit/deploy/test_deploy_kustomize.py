"""The kustomize-subset renderer: kustomize's own results, reproduced.

The expected names below were printed by ``kubectl kustomize`` (kustomize v5.0 -
v5.6, kubectl 1.27 - 1.33). Where a kubectl is on PATH, the last test also renders
deploy/k8s with it and requires the same objects in the same order.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_kustomize import KustomizeError, content_hash, render, strategic_merge
from deploy_support import K8S, OVERLAYS, Obj, one


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {app: demo}
spec:
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      containers:
        - name: app
          image: example/app:1.0
          env:
            - {name: A, value: "1"}
            - name: S
              valueFrom: {secretKeyRef: {name: creds, key: password}}
          envFrom:
            - configMapRef: {name: settings}
        - name: sidecar
          image: example/sidecar:2.0
      volumes:
        - name: conf
          configMap: {name: settings}
"""


def test_generator_names_match_kubectl(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "kustomization.yaml": """
configMapGenerator:
  - name: test
    literals: [key=value]
  - name: my-java-server-env-vars
    literals: [JAVA_HOME=/opt/java/jdk, JAVA_TOOL_OPTIONS=-agentlib:hprof]
secretGenerator:
  - name: test
    literals: [username=admin, password=somepw]
"""
        },
    )
    names = sorted((o["kind"], o["metadata"]["name"]) for o in render(tmp_path))
    assert names == [
        ("ConfigMap", "my-java-server-env-vars-c68g99m4hf"),
        ("ConfigMap", "test-t757gk2bmf"),
        ("Secret", "test-bgd6bkgdm2"),
    ]


def test_long_secret_values_are_wrapped_like_kustomize() -> None:
    secret: Obj = {"kind": "Secret", "type": "Opaque", "data": {"k": "dGVzdA=="}}
    assert content_hash(secret) == content_hash(dict(secret))
    assert len(content_hash(secret)) == 10


def test_generated_names_follow_into_pod_specs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "kustomization.yaml": """
resources: [deployment.yaml]
configMapGenerator:
  - name: settings
    envs: [settings.env]
secretGenerator:
  - name: creds
    literals: [password=a-long-value-that-needs-more-than-seventy-characters-once-encoded-xx]
""",
            "deployment.yaml": DEPLOYMENT,
            "settings.env": "# a comment\nLEVEL=info\n\nMODE=x=y\n",
        },
    )
    objects = render(tmp_path)
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert config["data"] == {"LEVEL": "info", "MODE": "x=y"}
    assert secret["data"]["password"].endswith("\n")  # kyaml wraps at 70 characters
    deployment = one(objects, "Deployment", "app")
    spec = deployment["spec"]["template"]["spec"]
    app = spec["containers"][0]
    assert app["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    assert app["env"][1]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert spec["volumes"][0]["configMap"]["name"] == config["metadata"]["name"]
    # kustomize's "legacy" order: ConfigMap, Secret, then the Deployment.
    assert [o["kind"] for o in objects] == ["ConfigMap", "Secret", "Deployment"]


def test_overlay_merges_patches_relabels_and_retags(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "base/kustomization.yaml": """
resources: [deployment.yaml]
configMapGenerator:
  - name: settings
    literals: [LEVEL=info, MODE=a]
""",
            "base/deployment.yaml": DEPLOYMENT,
            "overlay/kustomization.yaml": """
namespace: staging
resources: [../base]
labels:
  - pairs: {env: staging}
    includeTemplates: true
configMapGenerator:
  - name: settings
    behavior: merge
    literals: [MODE=b]
patches:
  - path: patch.yaml
  - target: {kind: Deployment, labelSelector: app=demo}
    patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: ignored}
      spec: {revisionHistoryLimit: 3}
images:
  - name: example/app
    newName: registry.test/app
    newTag: "2.0"
""",
            "overlay/patch.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers:
        - name: app
          env:
            - {name: A, value: "2"}
            - {name: B, value: "3"}
          resources: {limits: {cpu: "1"}}
      volumes: null
""",
        },
    )
    objects = render(tmp_path / "overlay")
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config["data"] == {"LEVEL": "info", "MODE": "b"}
    assert config["metadata"]["namespace"] == "staging"
    deployment = one(objects, "Deployment", "app")
    assert deployment["metadata"]["labels"] == {"app": "demo", "env": "staging"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "demo"}}
    assert deployment["spec"]["template"]["metadata"]["labels"]["env"] == "staging"
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    spec = deployment["spec"]["template"]["spec"]
    assert "volumes" not in spec
    app, sidecar = spec["containers"]
    # kustomize's order: the patch's items first, then the base's others.
    assert [(e["name"], e.get("value")) for e in app["env"]] == [
        ("A", "2"),
        ("B", "3"),
        ("S", None),
    ]
    assert app["resources"] == {"limits": {"cpu": "1"}}
    assert app["image"] == "registry.test/app:2.0"
    assert sidecar["image"] == "example/sidecar:2.0"
    assert app["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]


def test_strategic_merge_lists() -> None:
    base = {"ports": [{"containerPort": 1, "name": "a"}], "args": ["x", "y"]}
    patch = {"ports": [{"containerPort": 2, "name": "b"}], "args": ["z"]}
    merged = strategic_merge(base, patch)
    assert merged["ports"] == [{"containerPort": 2, "name": "b"}, {"containerPort": 1, "name": "a"}]
    assert merged["args"] == ["z"]
    deleted = strategic_merge(
        {"containers": [{"name": "a"}, {"name": "b"}]},
        {"containers": [{"name": "a", "$patch": "delete"}]},
    )
    assert deleted == {"containers": [{"name": "b"}]}


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("commonLabels: {a: b}\n", "unsupported kustomization fields"),
        ("resources: [../outside.yaml]\n", "outside"),
        ("configMapGenerator:\n  - name: x\n    behavior: merge\n    literals: [a=b]\n", "nothing"),
        (
            "resources: [d.yaml]\npatches:\n  - target: {kind: Service}\n"
            '    patch: \'[{"op": "add"}]\'\n',
            "single-document strategic-merge",
        ),
        ("labels:\n  - pairs: {a: b}\n    includeSelectors: true\n", "includeSelectors"),
    ],
)
def test_unsupported_or_wrong_input_fails_loudly(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    (tmp_path / "outside.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: o}\n")
    root = write(tmp_path / "k", {"kustomization.yaml": kustomization, "d.yaml": DEPLOYMENT})
    with pytest.raises(KustomizeError, match=message):
        render(root)


@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_same_output_as_kubectl_kustomize(target: str) -> None:
    """The renderer against the real thing, wherever a kubectl is installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on PATH (the renderer's golden tests above still ran)")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "unknown command" in done.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert done.returncode == 0, done.stderr
    expected = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert render(K8S / target) == expected
