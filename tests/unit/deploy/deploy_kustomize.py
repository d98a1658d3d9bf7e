"""A small renderer for the subset of kustomize that deploy/k8s uses, for offline tests.

The real command is ``kubectl kustomize deploy/k8s/overlays/<env>`` (kustomize v5);
no kubectl or kustomize binary can be installed from the package registries these
machines reach, so the tests render the overlays with this module instead. Where a
kubectl is on PATH, ``test_deploy_kustomize.py`` checks that both produce the same
objects, in the same order.

Supported, as kustomize v5 does it:

- ``resources``: YAML files (several documents each) and directories holding a
  kustomization (bases);
- ``configMapGenerator`` / ``secretGenerator`` with ``literals``, ``envs`` and
  ``files``, ``behavior`` create / merge / replace, ``options`` and the global
  ``generatorOptions``; name suffixes are kustomize's content hash, and every
  reference from a pod spec to a generated object is renamed with it;
- ``patches`` as strategic-merge patches (a file or inline), matched by the patch's
  own kind and name or by a ``target`` (kind, name, namespace, group, version,
  labelSelector);
- ``namespace``, ``labels`` (``includeSelectors: false``, with or without
  ``includeTemplates``) and ``images`` (newName, newTag, digest).

Anything else in a kustomization is an error, never silently ignored.

    python tests/unit/deploy/deploy_kustomize.py deploy/k8s/overlays/prod
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "configMapGenerator",
        "secretGenerator",
        "generatorOptions",
        "patches",
        "images",
    }
)
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
    }
)
# Kinds whose namespace references kustomize would also rewrite: not supported here.
UNSUPPORTED_KINDS = frozenset(
    {"RoleBinding", "ClusterRoleBinding", "MutatingWebhookConfiguration",
     "ValidatingWebhookConfiguration", "APIService"}
)  # fmt: skip
WORKLOAD_TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
)
# kustomize's "legacy" output order: these kinds first, in this order, the webhook
# configurations last, everything else in between by group_version_kind; then by
# namespace and name.
ORDER_FIRST = (
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
    "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
    "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service", "LimitRange",
    "PriorityClass", "PersistentVolume", "PersistentVolumeClaim", "Deployment",
    "StatefulSet", "CronJob", "PodDisruptionBudget",
)  # fmt: skip
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")

# Strategic merge: list fields merged item by item on this key (the Kubernetes API's
# patchMergeKey); every other list is replaced as a whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
    "hostAliases": "ip",
}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is wrong."""


@dataclass
class _Resource:
    obj: Obj
    # Generated ConfigMap/Secret whose name gets the content-hash suffix.
    hashed: bool = False

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.obj.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        value = self.obj.get("metadata", {}).get("namespace")
        return str(value) if value is not None else None


# ------------------------------------------------------------------ hashing


def _go_json(value: Any) -> str:
    """``encoding/json.Marshal`` of Go: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _encode_hash(hex_digest: str) -> str:
    """kustomize's 10-character suffix: the hash's first 10 hex digits, with the
    characters that could spell words (0 1 3 a e) replaced."""
    return hex_digest[:10].translate(str.maketrans("013ae", "ghkmt"))


def content_hash(obj: Obj) -> str:
    """The name suffix kustomize v5 (kubectl 1.27 - 1.33) gives a generated ConfigMap
    or Secret.

    kustomize's hasher encodes ``{"kind", "name", "data"}`` (plus ``binaryData``, or
    ``type`` and ``stringData`` for a Secret), but it looks the name up with the path
    ``"metadata/name"`` as one field name, which finds nothing: the name it hashes is
    always empty. Reproduced here, since the suffixes must match ``kubectl kustomize``.
    """
    kind = obj["kind"]
    data = obj.get("data") or ""
    encoded: dict[str, Any]
    if kind == "ConfigMap":
        encoded = {"kind": "ConfigMap", "name": "", "data": data}
        if isinstance(obj.get("binaryData"), dict):
            encoded["binaryData"] = obj["binaryData"]
    elif kind == "Secret":
        encoded = {"kind": "Secret", "type": obj.get("type", ""), "name": "", "data": data}
        if isinstance(obj.get("stringData"), dict):
            encoded["stringData"] = obj["stringData"]
    else:
        raise KustomizeError(f"cannot hash a {kind}")
    return _encode_hash(hashlib.sha256(_go_json(encoded).encode()).hexdigest())


# --------------------------------------------------------------- loading


def _load_documents(path: Path) -> list[Obj]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: not YAML: {exc}") from exc
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise KustomizeError(f"{path}: every document must be an object with a kind")
    return documents


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{directory}: no kustomization file")


def _inside(root: Path, path: Path) -> Path:
    """kustomize's default load restrictor: files must lie under the kustomization."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise KustomizeError(f"{path} is outside {root} (load restrictor rootOnly)")
    return resolved


# ------------------------------------------------------------- generators


def _parse_env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise KustomizeError(
                f"{path}:{number}: a key without '=' would be read from the environment"
            )
        data[key] = value
    return data


def _generator_data(directory: Path, spec: Obj) -> dict[str, str]:
    allowed = {"name", "namespace", "behavior", "literals", "envs", "files", "options", "type"}
    unknown = set(spec) - allowed
    if unknown:
        raise KustomizeError(f"generator {spec.get('name')}: unsupported fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for env in spec.get("envs", []):
        data.update(_parse_env_file(_inside(directory, directory / env)))
    for entry in spec.get("files", []):
        key, sep, relative = str(entry).partition("=")
        if not sep:
            key, relative = Path(entry).name, entry
        data[key] = _inside(directory, directory / relative).read_text(encoding="utf-8")
    for literal in spec.get("literals", []):
        key, sep, value = str(literal).partition("=")
        if not sep:
            raise KustomizeError(f"literal {literal!r} has no '='")
        data[key] = value
    return data


def _kyaml_base64(value: str) -> str:
    """Base64 as kustomize writes Secret data: lines of 70 characters, each ending in a
    newline once the text reaches 70 characters (Kubernetes ignores the newlines; the
    name hash does not)."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) < 70:
        return encoded
    return "".join(encoded[i : i + 70] + "\n" for i in range(0, len(encoded), 70))


def _apply_generators(directory: Path, kustomization: Obj, resources: list[_Resource]) -> None:
    global_options: Obj = kustomization.get("generatorOptions") or {}
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for spec in kustomization.get(field) or []:
            name = spec["name"]
            data = _generator_data(directory, spec)
            options = {**global_options, **(spec.get("options") or {})}
            behavior = spec.get("behavior", "create")
            existing = [
                r
                for r in resources
                if r.kind == kind
                and r.name == name
                and r.namespace == spec.get("namespace", r.namespace)
            ]
            if behavior == "create":
                if existing:
                    raise KustomizeError(f"{kind} {name} exists: behavior must be merge or replace")
                obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
                if spec.get("namespace"):
                    obj["metadata"]["namespace"] = spec["namespace"]
                resources.append(_Resource(obj, hashed=True))
                target = resources[-1]
                target.obj["data"] = {}
            elif behavior in ("merge", "replace"):
                if len(existing) != 1:
                    raise KustomizeError(f"{kind} {name}: nothing to {behavior}")
                target = existing[0]
                if behavior == "replace":
                    target.obj["data"] = {}
            else:
                raise KustomizeError(f"{kind} {name}: unknown behavior {behavior!r}")
            if kind == "Secret":
                encoded = {k: _kyaml_base64(v) for k, v in data.items()}
                target.obj.setdefault("data", {}).update(encoded)
                target.obj["type"] = spec.get("type", target.obj.get("type", "Opaque"))
            else:
                target.obj.setdefault("data", {}).update(data)
            metadata = target.obj["metadata"]
            for key in ("labels", "annotations"):
                if options.get(key):
                    metadata.setdefault(key, {}).update(options[key])
            if options.get("disableNameSuffixHash"):
                target.hashed = False
            if not target.obj["data"]:
                del target.obj["data"]


# ---------------------------------------------------------------- patches


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """Merge `patch` into `base` the way ``kubectl patch --type strategic`` does for
    the fields deploy/k8s patches: maps recursively (``null`` deletes a key), lists
    with a merge key item by item (``$patch: delete`` removes an item), other lists
    and scalars replaced."""
    if isinstance(patch, dict):
        directive = patch.get("$patch")
        if directive == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        if directive is not None:
            raise KustomizeError(f"unsupported directive $patch: {directive}")
        if any(k.startswith("$") for k in patch):
            raise KustomizeError(f"unsupported patch directive in {sorted(patch)}")
        if not isinstance(base, dict):
            base = {}
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = _strip_nulls(value)
        return merged
    if isinstance(patch, list):
        key = _merge_key(field, base, patch)
        if key is None or not isinstance(base, list):
            return [_strip_nulls(v) for v in patch]
        # kustomize (kyaml) order: the patch's items first, in the patch's order
        # (merged into their base item when there is one), then the base's other
        # items in their order.
        base_items = {item.get(key): item for item in base if isinstance(item, dict)}
        merged_list: list[Any] = []
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise KustomizeError(f"list {field}: every item needs its merge key {key}")
            old = base_items.get(item[key])
            if item.get("$patch") == "delete":
                continue
            if old is None:
                merged_list.append(_strip_nulls(item))
            else:
                merged_list.append(strategic_merge(copy.deepcopy(old), item, field))
        patched = {item[key] for item in patch}
        merged_list.extend(
            copy.deepcopy(item)
            for item in base
            if not (isinstance(item, dict) and item.get(key) in patched)
        )
        return merged_list
    return patch


def _merge_key(field: str, base: Any, patch: list[Any]) -> str | None:
    if field == "ports":
        items = [*(base if isinstance(base, list) else []), *patch]
        return "containerPort" if any("containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.split("=", 1))
            if labels.get(key) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _targets(resources: list[_Resource], target: Obj) -> list[_Resource]:
    unknown = set(target) - {"kind", "name", "namespace", "group", "version", "labelSelector"}
    if unknown:
        raise KustomizeError(f"unsupported patch target fields {sorted(unknown)}")
    found = []
    for resource in resources:
        api_version = str(resource.obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        checks = [
            ("kind", resource.kind),
            ("namespace", resource.namespace or ""),
            ("group", group),
            ("version", version),
        ]
        if any(k in target and not re.fullmatch(target[k], v) for k, v in checks):
            continue
        if "name" in target and not re.fullmatch(target["name"], resource.name):
            continue
        labels = resource.obj.get("metadata", {}).get("labels") or {}
        if "labelSelector" in target and not _label_selector_matches(
            target["labelSelector"], labels
        ):
            continue
        found.append(resource)
    return found


def _apply_patches(directory: Path, kustomization: Obj, resources: list[_Resource]) -> None:
    for entry in kustomization.get("patches") or []:
        unknown = set(entry) - {"path", "patch", "target", "options"}
        if unknown or entry.get("options"):
            raise KustomizeError(f"unsupported patch fields {sorted(unknown | {'options'})}")
        if "path" in entry:
            text = _inside(directory, directory / entry["path"]).read_text(encoding="utf-8")
        else:
            text = entry["patch"]
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        if len(documents) != 1 or not isinstance(documents[0], dict):
            raise KustomizeError("only single-document strategic-merge patches are supported")
        patch = documents[0]
        if "target" in entry:
            matched = _targets(resources, entry["target"])
        else:
            meta = patch.get("metadata", {})
            wanted = {"kind": patch.get("kind"), "name": meta.get("name")}
            if "namespace" in meta:
                wanted["namespace"] = meta["namespace"]
            matched = [
                r
                for r in resources
                if r.kind == wanted["kind"]
                and r.name == wanted["name"]
                and ("namespace" not in wanted or r.namespace == wanted["namespace"])
            ]
            if len(matched) != 1:
                raise KustomizeError(
                    f"patch for {wanted['kind']} {wanted['name']} matched {len(matched)} objects"
                )
        if not matched:
            raise KustomizeError(f"patch target {entry.get('target')} matched nothing")
        body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
        patch_meta = {k: v for k, v in patch.get("metadata", {}).items() if k != "name"}
        if "target" not in entry:
            patch_meta.pop("namespace", None)
        for resource in matched:
            resource.obj = strategic_merge(resource.obj, {**body, "metadata": patch_meta})


# ------------------------------------------------------------ transformers


def _pod_specs(obj: Obj) -> list[Obj]:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in WORKLOAD_TEMPLATE_KINDS:
        return [spec.get("template", {}).get("spec") or {}]
    if kind == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or {}]
    if kind == "Pod":
        return [spec]
    return []


def _template_metadata(obj: Obj) -> list[Obj]:
    kind = obj.get("kind")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    if kind in WORKLOAD_TEMPLATE_KINDS and isinstance(spec.get("template"), dict):
        found = [spec["template"].setdefault("metadata", {})]
        if kind == "StatefulSet":
            claims = spec.get("volumeClaimTemplates") or []
            found.extend(claim.setdefault("metadata", {}) for claim in claims)
        return found
    if kind == "CronJob":
        job = spec.get("jobTemplate") or {}
        pod = job.get("spec", {}).get("template")
        found = [job.setdefault("metadata", {})]
        if isinstance(pod, dict):
            found.append(pod.setdefault("metadata", {}))
        return found
    return []


def _apply_namespace(namespace: str, resources: list[_Resource]) -> None:
    for resource in resources:
        if resource.kind in UNSUPPORTED_KINDS:
            raise KustomizeError(f"{resource.kind}: namespace references are not rewritten here")
        metadata = resource.obj.setdefault("metadata", {})
        if resource.kind == "Namespace":
            if metadata.get("name") != namespace:
                raise KustomizeError(
                    f"Namespace {metadata.get('name')} differs from namespace: {namespace}"
                )
            continue
        if resource.kind in CLUSTER_SCOPED_KINDS:
            continue
        metadata["namespace"] = namespace


def _apply_labels(entries: list[Obj], resources: list[_Resource]) -> None:
    for entry in entries:
        unknown = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        if unknown or entry.get("includeSelectors"):
            raise KustomizeError("labels: only pairs with includeSelectors: false are supported")
        pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
        for resource in resources:
            resource.obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if entry.get("includeTemplates"):
                for metadata in _template_metadata(resource.obj):
                    metadata.setdefault("labels", {}).update(pairs)


_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>.+))?$")


def _apply_images(entries: list[Obj], resources: list[_Resource]) -> None:
    for entry in entries:
        unknown = set(entry) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise KustomizeError(f"images: unsupported fields {sorted(unknown)}")
        for resource in resources:
            for pod in _pod_specs(resource.obj):
                for field in ("initContainers", "containers"):
                    for container in pod.get(field) or []:
                        match = _IMAGE.match(str(container.get("image", "")))
                        if not match or match["name"] != entry["name"]:
                            continue
                        image = str(entry.get("newName", match["name"]))
                        if "digest" in entry:
                            image += "@" + str(entry["digest"])
                        elif "newTag" in entry:
                            image += ":" + str(entry["newTag"])
                        elif match["tag"] or match["digest"]:
                            image += (":" + match["tag"]) if match["tag"] else ""
                            image += ("@" + match["digest"]) if match["digest"] else ""
                        container["image"] = image


def _rename_references(resource: _Resource, kind: str, old: str, new: str) -> None:
    key_ref, env_from, volume_field, volume_key = (
        ("configMapKeyRef", "configMapRef", "configMap", "name")
        if kind == "ConfigMap"
        else ("secretKeyRef", "secretRef", "secret", "secretName")
    )

    def rename(holder: Obj | None, field: str) -> None:
        if isinstance(holder, dict) and holder.get(field) == old:
            holder[field] = new

    for pod in _pod_specs(resource.obj):
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for container in pod.get(field) or []:
                for source in container.get("envFrom") or []:
                    rename(source.get(env_from), "name")
                for env in container.get("env") or []:
                    rename((env.get("valueFrom") or {}).get(key_ref), "name")
        for volume in pod.get("volumes") or []:
            rename(volume.get(volume_field), volume_key)
            for source in (volume.get("projected") or {}).get("sources") or []:
                rename(source.get(volume_field), "name")
        if kind == "Secret":
            for pull in pod.get("imagePullSecrets") or []:
                rename(pull, "name")


# ------------------------------------------------------------------ build


def _build(directory: Path, seen: tuple[Path, ...] = ()) -> list[_Resource]:
    directory = directory.resolve()
    if directory in seen:
        raise KustomizeError(f"cycle through {directory}")
    kustomization = yaml.safe_load(_kustomization_file(directory).read_text(encoding="utf-8"))
    if not isinstance(kustomization, dict):
        raise KustomizeError(f"{directory}: the kustomization is not a mapping")
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{directory}: kind must be Kustomization")

    resources: list[_Resource] = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        if path.is_dir():
            resources.extend(_build(path, (*seen, directory)))
        else:
            resources.extend(_Resource(d) for d in _load_documents(_inside(directory, path)))
    _apply_generators(directory, kustomization, resources)
    _apply_patches(directory, kustomization, resources)
    if kustomization.get("namespace"):
        _apply_namespace(str(kustomization["namespace"]), resources)
    _apply_labels(kustomization.get("labels") or [], resources)
    _apply_images(kustomization.get("images") or [], resources)
    _check_unique(resources)
    return resources


def _check_unique(resources: list[_Resource]) -> None:
    seen: set[tuple[str, str, str | None]] = set()
    for resource in resources:
        key = (resource.kind, resource.name, resource.namespace)
        if key in seen:
            raise KustomizeError(f"duplicate {resource.kind} {resource.name}")
        seen.add(key)


def _sort_key(obj: Obj) -> tuple[int, str, str, str]:
    kind = str(obj.get("kind", ""))
    group_version = str(obj.get("apiVersion", ""))
    group, _, version = group_version.rpartition("/")
    gvk = f"{group or '~G'}_{version}_{kind}"
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    metadata = obj.get("metadata", {})
    return (
        rank,
        gvk if rank == len(ORDER_FIRST) else "",
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
    )


def render(directory: Path | str) -> list[Obj]:
    """The objects ``kubectl kustomize <directory>`` prints, in the same order."""
    resources = _build(Path(directory))
    for resource in resources:
        if not resource.hashed:
            continue
        old = resource.name
        new = f"{old}-{content_hash(resource.obj)}"
        resource.obj["metadata"]["name"] = new
        for other in resources:
            if other.namespace == resource.namespace:
                _rename_references(other, resource.kind, old, new)
    return sorted((r.obj for r in resources), key=_sort_key)


def to_yaml(objects: list[Obj]) -> str:
    return str(yaml.safe_dump_all(objects, sort_keys=True, default_flow_style=False))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: deploy_kustomize.py <kustomization directory>", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(render(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
