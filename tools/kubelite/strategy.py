"""Per-resource write strategy, like the apiserver's registry strategies.

Owns what happens to an object between decoding and storage that is not
admission policy: scheme defaults (pod spec, deployments, secrets' stringData,
namespaces, RBAC subjects), basic validation (names, pods without containers,
deployment selectors) raising 422 Invalid, and status isolation between a
resource and its ``status`` subresource. Functions mutate the dict they are
given; nothing here knows HTTP, threads or the store.
"""

from __future__ import annotations

import base64
import copy

from . import errors
from .admission.fielderrors import LABEL_MSG, LABEL_RE, SUBDOMAIN_MSG, SUBDOMAIN_RE
from .defaults import apply_pod_defaults as default_pod_spec, qos_class
from .resources import Resource

_LABEL_NAMED = frozenset({"namespaces"})
_PATH_SEGMENT_NAMED = frozenset({"clusterroles", "clusterrolebindings", "roles", "rolebindings"})


def required(field: str, detail: str = "") -> dict:
    return {"reason": "FieldValueRequired", "message": "Required value" + (f": {detail}" if detail else ""),
            "field": field}


def invalid_value(field: str, value, detail: str) -> dict:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {_quote(value)}: {detail}", "field": field}


def _quote(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


# -- defaults ---------------------------------------------------------------

def _default_template(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    tmpl = spec.setdefault("template", {})
    tmpl.setdefault("metadata", {})
    default_pod_spec(tmpl.setdefault("spec", {}))


def _default_job(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    tmpl = spec.setdefault("template", {})
    tmpl.setdefault("metadata", {})
    default_pod_spec(tmpl.setdefault("spec", {}))
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1  # neither given: one pod, as upstream
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)


def default(resource: Resource, obj: dict) -> None:
    """Apply scheme defaults to ``obj`` in place (on create and update, like the apiserver's decoder)."""
    name = resource.plural
    if resource.key == "pods":
        default_pod_spec(obj.setdefault("spec", {}))
    elif resource.key == "deployments":
        _default_template(obj)
        spec = obj["spec"]
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    elif resource.key == "replicasets":
        _default_template(obj)
    elif resource.key == "jobs":
        _default_job(obj)
    elif name == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.get("data") or {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
    elif name == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif name in ("rolebindings", "clusterrolebindings"):
        for s in obj.get("subjects") or []:
            if s.get("kind") in ("User", "Group"):
                s.setdefault("apiGroup", "rbac.authorization.k8s.io")


# -- validation -------------------------------------------------------------

def _validate_name(resource: Resource, name: str, field: str = "metadata.name") -> list[dict]:
    if resource.plural in _PATH_SEGMENT_NAMED:
        if name in (".", "..") or "/" in name or "%" in name:
            return [invalid_value(field, name, "may not contain '/' or '%' or be '.' or '..'")]
        return []
    if resource.plural in _LABEL_NAMED:
        if len(name) > 63 or not LABEL_RE.match(name):
            return [invalid_value(field, name, LABEL_MSG)]
        return []
    if len(name) > 253 or not SUBDOMAIN_RE.match(name):
        return [invalid_value(field, name, SUBDOMAIN_MSG)]
    return []


def _validate_containers(containers, path: str) -> list[dict]:
    causes: list[dict] = []
    seen: set[str] = set()
    for i, c in enumerate(containers or []):
        p = f"{path}[{i}]"
        cname = c.get("name") or ""
        if not cname:
            causes.append(required(f"{p}.name"))
        elif len(cname) > 63 or not LABEL_RE.match(cname):
            causes.append(invalid_value(f"{p}.name", cname, LABEL_MSG))
        elif cname in seen:
            causes.append({"reason": "FieldValueDuplicate", "message": f'Duplicate value: "{cname}"',
                           "field": f"{p}.name"})
        seen.add(cname)
        if not c.get("image"):
            causes.append(required(f"{p}.image"))
    return causes


def _validate_pod_spec(spec: dict, path: str) -> list[dict]:
    causes: list[dict] = []
    if not spec.get("containers"):
        causes.append(required(f"{path}.containers"))
    causes += _validate_containers(spec.get("containers"), f"{path}.containers")
    causes += _validate_containers(spec.get("initContainers"), f"{path}.initContainers")
    rp = spec.get("restartPolicy")
    if rp not in (None, "Always", "OnFailure", "Never"):
        causes.append({"reason": "FieldValueNotSupported", "field": f"{path}.restartPolicy",
                       "message": f'Unsupported value: "{rp}": supported values: "Always", "OnFailure", "Never"'})
    return causes


def _validate_selector_template(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        return [required("spec.selector")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return [invalid_value("spec.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`")]
    causes = []
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(invalid_value("spec.replicas", replicas, "must be greater than or equal to 0"))
    return causes + _validate_pod_spec((spec.get("template") or {}).get("spec") or {}, "spec.template.spec")


def validate(resource: Resource, obj: dict, *, creating: bool) -> None:
    """Raise 422 Invalid with causes for obviously invalid objects."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[dict] = []
    if not name:
        if not (creating and meta.get("generateName")):
            causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes += _validate_name(resource, name)
    if resource.key == "pods":
        causes += _validate_pod_spec(obj.get("spec") or {}, "spec")
    elif resource.key in ("deployments", "replicasets"):
        causes += _validate_selector_template(obj)
    elif resource.key == "certificatesigningrequests":
        from .csr import validate_csr  # cryptography only where a CSR is read
        causes += validate_csr(obj)
    if causes:
        raise errors.invalid(resource.kind, name, causes, resource.group)


# -- status isolation ---------------------------------------------------------

def prepare_create(resource: Resource, obj: dict) -> None:
    """Server-side resets on create (status of pods/deployments/replicasets, namespace phase)."""
    if resource.key == "pods":
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    elif resource.key == "replicasets":
        obj["status"] = {"replicas": 0}  # not omitempty in the API types
    elif resource.clear_status_on_create:
        obj["status"] = {}
    elif resource.plural == "namespaces":
        obj["status"] = {"phase": "Active"}


_SERVER_META = ("deletionTimestamp", "deletionGracePeriodSeconds")


def prepare_update(resource: Resource, old: dict, new: dict, subresource: str | None) -> dict:
    """The object to store for an update of ``old`` by ``new`` through ``subresource``."""
    if subresource == "binding":
        return new  # the server's own write (spec.nodeName and PodScheduled together)
    if subresource == "approval":  # only the Approved/Denied conditions change here
        out = copy.deepcopy(old)
        out.setdefault("status", {})["conditions"] = (new.get("status") or {}).get("conditions") or []
        out["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get("resourceVersion")
        return out
    if subresource == "status":
        out = copy.deepcopy(old)
        out["status"] = new.get("status", {})
        out["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get("resourceVersion")
        return out
    meta = new.setdefault("metadata", {})
    old_meta = old.get("metadata") or {}
    for k in _SERVER_META:
        if k in old_meta:
            meta[k] = old_meta[k]
        else:
            meta.pop(k, None)
    if resource.status_isolated:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
        if resource.plural == "namespaces":
            new.setdefault("spec", {})["finalizers"] = (old.get("spec") or {}).get("finalizers", [])
    return new
