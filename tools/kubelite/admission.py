"""Admission for kubelite: the defaulting, mutation and validation a default cluster applies.

Owns `admit_create` and `admit_update`.  For pods: API defaulting (the
fields a real API server fills in), the ServiceAccount plugin (default
service account, the projected `kube-api-access-*` token volume and its
mounts), DefaultTolerationSeconds, validation of obviously invalid specs and
the rule that a pod spec is immutable except for a few fields.  For other
resources: cheap name and content checks (and Secret `stringData` folded
into `data`, as the API server's conversion does).  Reads other objects only
through the read-only `view`; returns new dicts; never mutates its inputs.
Errors are `AdmissionError` (a kubelite `ApiError`) with the upstream
wording: 422 Invalid with `details.causes`, 403 Forbidden, 400 BadRequest.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import secrets as _random
from dataclasses import dataclass
from typing import Any, Callable

from .defaults import apply_pod_defaults, qos_class
from .errors import ApiError

__all__ = ["AdmissionError", "admit_create", "admit_update", "default_pod_spec",
           "TOKEN_MOUNT_PATH"]


class AdmissionError(ApiError):
    """An admission refusal: HTTP code, Kubernetes reason, message, optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(code, reason, message, details)


TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION_SECONDS = 3607
DEFAULT_TOLERATION_SECONDS = 300
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String alphabet


# --------------------------------------------------------------------------
# field errors (upstream field.Error wording)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldError:
    field: str
    kind: str           # Required | Duplicate | Invalid | NotFound | NotSupported | Forbidden
    value: Any = None
    detail: str = ""

    _REASONS = {
        "Required": ("FieldValueRequired", "Required value"),
        "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
        "Invalid": ("FieldValueInvalid", "Invalid value"),
        "NotFound": ("FieldValueNotFound", "Not found"),
        "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
        "Forbidden": ("FieldValueForbidden", "Forbidden"),
    }

    def body(self) -> str:
        reason, text = self._REASONS[self.kind]
        if self.kind in ("Required", "Forbidden"):
            return f"{text}: {self.detail}" if self.detail else text
        shown = f'"{self.value}"' if isinstance(self.value, str) else _go_value(self.value)
        out = f"{text}: {shown}"
        return f"{out}: {self.detail}" if self.detail else out

    def cause(self) -> dict:
        return {"reason": self._REASONS[self.kind][0], "message": self.body(),
                "field": self.field}


def _go_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return str(value)


def _invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> AdmissionError:
    causes = [e.cause() for e in errors]
    parts = [f"{e.field}: {e.body()}" for e in errors]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details: dict = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    qualified = f"{kind}.{group}" if group else kind
    return AdmissionError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------

_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
              "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric character "
                  "(e.g. 'example.com', regex used for validation is "
                  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                   "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                   "is '[-._a-zA-Z0-9]+')")


def _label_errors(path: str, value: str) -> list[FieldError]:
    if len(value) > 63:
        return [FieldError(path, "Invalid", value, "must be no more than 63 characters")]
    if not _LABEL_RE.match(value):
        return [FieldError(path, "Invalid", value, _LABEL_MSG)]
    return []


def _subdomain_errors(path: str, value: str) -> list[FieldError]:
    if len(value) > 253:
        return [FieldError(path, "Invalid", value, "must be no more than 253 characters")]
    if not _SUBDOMAIN_RE.match(value):
        return [FieldError(path, "Invalid", value, _SUBDOMAIN_MSG)]
    return []


def _name_errors(obj: dict, check: Callable[[str, str], list[FieldError]]) -> list[FieldError]:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        return []  # generateName: the server names it after admission
    return check("metadata.name", name)


def _name(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return meta.get("name") or meta.get("generateName") or ""


def default_pod_spec(spec: dict) -> dict:
    """A copy of a PodSpec with the API server's defaults filled in."""
    return apply_pod_defaults(copy.deepcopy(spec))


# --------------------------------------------------------------------------
# pod admission plugins
# --------------------------------------------------------------------------

def _forbidden(resource: str, name: str, why: str) -> AdmissionError:
    subject = f'{resource} "{name}"' if name else resource
    return AdmissionError(403, "Forbidden", f"{subject} is forbidden: {why}",
                          {"name": name, "kind": resource})


def _token_volume(name: str) -> dict:
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                         "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    }


def _service_account_plugin(pod: dict, view: Any) -> None:
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return
    spec = pod["spec"]
    namespace = meta.get("namespace") or "default"
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa_name
    spec["serviceAccount"] = sa_name  # the deprecated alias is kept in step
    account = view.get("serviceaccounts", namespace, sa_name)
    if account is None:
        raise _forbidden("pods", meta.get("name") or "",
                         f"error looking up service account {namespace}/{sa_name}: "
                         f'serviceaccount "{sa_name}" not found')
    if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
        spec["imagePullSecrets"] = copy.deepcopy(account["imagePullSecrets"])
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken")
    if automount is False:
        return
    volumes = spec.setdefault("volumes", [])
    existing = next((v["name"] for v in volumes
                     if isinstance(v, dict) and str(v.get("name", "")).startswith(TOKEN_VOLUME_PREFIX)),
                    None)
    volume_name = existing or TOKEN_VOLUME_PREFIX + "".join(
        _random.choice(_RANDOM_ALPHABET) for _ in range(5))
    if existing is None:
        volumes.append(_token_volume(volume_name))
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            mounts = c.setdefault("volumeMounts", [])
            if not any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                mounts.append({"name": volume_name, "readOnly": True,
                               "mountPath": TOKEN_MOUNT_PATH})


def _default_tolerations_plugin(pod: dict) -> None:
    spec = pod["spec"]
    tolerations = spec.get("tolerations") or []

    def covered(key: str) -> bool:
        return any((t.get("key") in (key, None, "")) and (t.get("effect") in ("NoExecute", None, ""))
                   for t in tolerations)

    added = []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not covered(key):
            added.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    if added:
        spec["tolerations"] = tolerations + added


# --------------------------------------------------------------------------
# pod validation
# --------------------------------------------------------------------------

_RESTART_POLICIES = ("Always", "OnFailure", "Never")


def _supported(values: tuple[str, ...]) -> str:
    return "supported values: " + ", ".join(f'"{v}"' for v in values)


def _validate_container(c: Any, path: str, volumes: set[str], seen: set[str]) -> list[FieldError]:
    if not isinstance(c, dict):
        return [FieldError(path, "Invalid", str(c), "must be an object")]
    errors: list[FieldError] = []
    name = c.get("name")
    if not name:
        errors.append(FieldError(f"{path}.name", "Required"))
    else:
        errors += _label_errors(f"{path}.name", name)
        if name in seen:
            errors.append(FieldError(f"{path}.name", "Duplicate", name))
        seen.add(name)
    if not c.get("image"):
        errors.append(FieldError(f"{path}.image", "Required"))
    mount_paths: set[str] = set()
    for i, m in enumerate(c.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{i}]"
        if not m.get("name"):
            errors.append(FieldError(f"{mpath}.name", "Required"))
        elif m["name"] not in volumes:
            errors.append(FieldError(f"{mpath}.name", "NotFound", m["name"]))
        mount_path = m.get("mountPath")
        if not mount_path:
            errors.append(FieldError(f"{mpath}.mountPath", "Required"))
        elif mount_path in mount_paths:
            errors.append(FieldError(f"{mpath}.mountPath", "Invalid", mount_path, "must be unique"))
        else:
            mount_paths.add(mount_path)
    env_names = set()
    for i, env in enumerate(c.get("env") or []):
        env_name = env.get("name")
        if not env_name:
            errors.append(FieldError(f"{path}.env[{i}].name", "Required"))
        elif not _ENV_NAME_RE.match(env_name):
            errors.append(FieldError(
                f"{path}.env[{i}].name", "Invalid", env_name,
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.', and must not start with a digit"))
        env_names.add(env_name)
    for i, port in enumerate(c.get("ports") or []):
        number = port.get("containerPort")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            errors.append(FieldError(f"{path}.ports[{i}].containerPort", "Invalid", number,
                                     "must be between 1 and 65535, inclusive"))
    return errors


def validate_pod_spec(spec: Any, path: str = "spec") -> list[FieldError]:
    """Field errors of a (defaulted) PodSpec; empty when valid."""
    if not isinstance(spec, dict):
        return [FieldError(path, "Required")]
    errors: list[FieldError] = []
    volumes: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        name = v.get("name") if isinstance(v, dict) else None
        if not name:
            errors.append(FieldError(f"{path}.volumes[{i}].name", "Required"))
            continue
        errors += _label_errors(f"{path}.volumes[{i}].name", name)
        if name in volumes:
            errors.append(FieldError(f"{path}.volumes[{i}].name", "Duplicate", name))
        volumes.add(name)
    containers = spec.get("containers")
    if not containers:
        errors.append(FieldError(f"{path}.containers", "Required"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            errors += _validate_container(c, f"{path}.{key}[{i}]", volumes, seen)
    policy = spec.get("restartPolicy")
    if policy not in _RESTART_POLICIES:
        errors.append(FieldError(f"{path}.restartPolicy", "NotSupported", policy,
                                 _supported(_RESTART_POLICIES)))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
        errors.append(FieldError(f"{path}.activeDeadlineSeconds", "Invalid", deadline,
                                 "must be between 1 and 2147483647, inclusive"))
    for i, t in enumerate(spec.get("tolerations") or []):
        operator = t.get("operator") or "Equal"
        if operator not in ("Equal", "Exists"):
            errors.append(FieldError(f"{path}.tolerations[{i}].operator", "NotSupported",
                                     operator, _supported(("Equal", "Exists"))))
        elif operator == "Exists" and t.get("value"):
            errors.append(FieldError(f"{path}.tolerations[{i}].operator", "Invalid", t["value"],
                                     "value must be empty when `operator` is 'Exists'"))
        elif not t.get("key") and operator != "Exists":
            errors.append(FieldError(f"{path}.tolerations[{i}].operator", "Invalid", operator,
                                     "operator must be Exists when `key` is empty, which means "
                                     "\"match all values and all keys\""))
    return errors


def _admit_pod_create(pod: dict, view: Any) -> dict:
    pod = copy.deepcopy(pod)
    if not isinstance(pod.get("spec"), dict):
        raise _invalid("Pod", _name(pod), [FieldError("spec.containers", "Required")])
    pod["spec"] = default_pod_spec(pod["spec"])
    _service_account_plugin(pod, view)
    _default_tolerations_plugin(pod)
    pod["spec"].setdefault("priority", 0)
    pod["spec"].setdefault("preemptionPolicy", "PreemptLowerPriority")
    errors = _name_errors(pod, _subdomain_errors) + validate_pod_spec(pod["spec"])
    if errors:
        raise _invalid("Pod", _name(pod), errors)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod["spec"])}
    return pod


# Fields a pod update may change, in upstream's wording.
_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def _changed_fields(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_fields(old.get(key), new.get(key), f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += _changed_fields(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [path]


def _toleration_id(t: dict) -> tuple:
    return (t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "",
            t.get("effect") or "")


def _validate_pod_update(old: dict, new: dict) -> list[FieldError]:
    old_spec = old.get("spec") or {}
    new_spec = new.get("spec") or {}
    errors: list[FieldError] = []

    old_deadline = old_spec.get("activeDeadlineSeconds")
    new_deadline = new_spec.get("activeDeadlineSeconds")
    if old_deadline is not None:
        if new_deadline is None:
            errors.append(FieldError("spec.activeDeadlineSeconds", "Invalid", None,
                                     "must not update from a positive integer to nil value"))
        elif isinstance(new_deadline, int) and new_deadline > old_deadline:
            errors.append(FieldError("spec.activeDeadlineSeconds", "Invalid", new_deadline,
                                     "must be less than or equal to previous value"))

    new_ids = {_toleration_id(t): t for t in new_spec.get("tolerations") or []}
    for t in old_spec.get("tolerations") or []:
        match = new_ids.get(_toleration_id(t))
        if match is None:
            errors.append(FieldError("spec.tolerations", "Forbidden", detail=(
                "existing toleration can not be modified except its tolerationSeconds")))
            break
        old_seconds, new_seconds = t.get("tolerationSeconds"), match.get("tolerationSeconds")
        if old_seconds is not None and (new_seconds is None or new_seconds > old_seconds):
            errors.append(FieldError("spec.tolerations", "Forbidden", detail=(
                "existing toleration can not be modified except its tolerationSeconds; "
                "tolerationSeconds may only be decreased")))
            break

    # Compare the rest of the spec with the mutable fields carried over from old.
    comparable = copy.deepcopy(new_spec)
    for key in ("containers", "initContainers"):
        old_list = old_spec.get(key) or []
        new_list = comparable.get(key) or []
        if len(old_list) == len(new_list):
            for o, n in zip(old_list, new_list):
                if isinstance(o, dict) and isinstance(n, dict) and "image" in o:
                    n["image"] = o["image"]
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in old_spec:
            comparable[key] = copy.deepcopy(old_spec[key])
        else:
            comparable.pop(key, None)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if (isinstance(old_grace, int) and old_grace < 0
            and new_spec.get("terminationGracePeriodSeconds") == 1):
        comparable["terminationGracePeriodSeconds"] = old_grace
    changed = _changed_fields(old_spec, comparable, "spec")
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        errors.append(FieldError("spec", "Forbidden",
                                 detail=f"{_POD_UPDATE_FORBIDDEN}\n  changed: {shown}"))
    return errors


def _admit_pod_update(old: dict, new: dict) -> dict:
    new = copy.deepcopy(new)
    if not isinstance(new.get("spec"), dict):
        new["spec"] = {}
    new["spec"] = default_pod_spec(new["spec"])
    _default_tolerations_plugin(new)  # DefaultTolerationSeconds admits updates too
    errors = _validate_pod_update(old, new)
    if not errors:
        errors = validate_pod_spec(new["spec"])
    if errors:
        raise _invalid("Pod", _name(new) or _name(old), errors)
    return new


# --------------------------------------------------------------------------
# other resources
# --------------------------------------------------------------------------

def _key_errors(obj: dict, fields: tuple[str, ...]) -> list[FieldError]:
    errors = []
    seen: set[str] = set()
    for field_name in fields:
        for key in (obj.get(field_name) or {}):
            if len(key) > 253 or not _CONFIG_KEY_RE.match(key):
                errors.append(FieldError(f"{field_name}[{key}]", "Invalid", key, _CONFIG_KEY_MSG))
            elif key in seen:
                errors.append(FieldError(f"{field_name}[{key}]", "Invalid", key,
                                         "duplicate of key present in another data field"))
            seen.add(key)
    return errors


def _admit_configmap(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    errors = _name_errors(obj, _subdomain_errors) + _key_errors(obj, ("data", "binaryData"))
    if errors:
        raise _invalid("ConfigMap", _name(obj), errors)
    return obj


def _admit_secret(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value if isinstance(value, str) else "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AdmissionError(
                400, "BadRequest",
                f'Secret in version "v1" cannot be handled as a Secret: {exc}') from None
        if not isinstance(value, str):
            raise AdmissionError(
                400, "BadRequest",
                f'Secret in version "v1" cannot be handled as a Secret: data[{key}] is not a string')
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        merged = dict(data)
        for key, value in string_data.items():
            merged[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = merged
    obj.setdefault("type", "Opaque")
    errors = _name_errors(obj, _subdomain_errors) + _key_errors(obj, ("data",))
    if errors:
        raise _invalid("Secret", _name(obj), errors)
    return obj


def _admit_named(kind: str, check: Callable[[str, str], list[FieldError]]) -> Callable[[dict], dict]:
    def admit(obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        errors = _name_errors(obj, check)
        if errors:
            raise _invalid(kind, _name(obj), errors)
        return obj
    return admit


def _matches_selector(selector: dict, labels: dict) -> bool:
    from .selectors import SelectorError, label_selector_from_dict
    try:
        return label_selector_from_dict(selector).matches(labels)
    except SelectorError:
        return False


def _default_workload(obj: dict, kind: str) -> dict:
    obj = copy.deepcopy(obj)
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    if kind == "Deployment":
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        template["spec"] = default_pod_spec(template["spec"])
    return obj


def _validate_workload(obj: dict, kind: str, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors = _name_errors(obj, _subdomain_errors)
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        errors.append(FieldError("spec.replicas", "Invalid", replicas,
                                 "must be greater than or equal to 0"))
    if not selector:
        errors.append(FieldError("spec.selector", "Required"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errors.append(FieldError("spec.selector", "Invalid", selector,
                                 "empty selector is invalid for deployment"))
    elif not _matches_selector(selector, labels):
        errors.append(FieldError("spec.template.metadata.labels", "Invalid", labels,
                                 "`selector` does not match template `labels`"))
    if old is not None and selector != (old.get("spec") or {}).get("selector"):
        errors.append(FieldError("spec.selector", "Invalid", selector, "field is immutable"))
    template_spec = (spec.get("template") or {}).get("spec")
    if template_spec is None:
        errors.append(FieldError("spec.template.spec.containers", "Required"))
    else:
        errors += validate_pod_spec(template_spec, "spec.template.spec")
    return errors


def _admit_workload(kind: str) -> Callable[[dict, dict | None], dict]:
    def admit(obj: dict, old: dict | None) -> dict:
        obj = _default_workload(obj, kind)
        errors = _validate_workload(obj, kind, old)
        if errors:
            raise _invalid(kind, _name(obj), errors, group="apps")
        return obj
    return admit


_SIMPLE: dict[str, Callable[[dict], dict]] = {
    "configmaps": _admit_configmap,
    "secrets": _admit_secret,
    "namespaces": _admit_named("Namespace", _label_errors),
    "serviceaccounts": _admit_named("ServiceAccount", _subdomain_errors),
}
_WORKLOADS = {"deployments": _admit_workload("Deployment"),
              "replicasets": _admit_workload("ReplicaSet")}


# --------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------

def admit_create(resource: str, obj: dict, view: Any) -> dict:
    """The object as it would be stored on create, or raise `AdmissionError`.

    `resource` is the plural ("pods", "configmaps", ...); `view` offers
    `get(resource, namespace, name)` and `list(resource, namespace=None)`.
    """
    if resource == "pods":
        return _admit_pod_create(obj, view)
    if resource in _SIMPLE:
        return _SIMPLE[resource](obj)
    if resource in _WORKLOADS:
        return _WORKLOADS[resource](obj, None)
    return copy.deepcopy(obj)


def admit_update(resource: str, old: dict, new: dict, view: Any) -> dict:
    """The object as it would be stored on update, or raise `AdmissionError`.

    `resource` may name a subresource: for "pods/status" the spec is taken
    from `old` (a status write never changes the spec), as upstream's status
    strategy does; other subresources pass through.
    """
    if resource == "pods":
        return _admit_pod_update(old, new)
    if resource == "pods/status":
        out = copy.deepcopy(new)
        out["spec"] = copy.deepcopy(old.get("spec") or {})
        return out
    if "/" in resource:
        return copy.deepcopy(new)
    if resource in _SIMPLE:
        return _SIMPLE[resource](new)
    if resource in _WORKLOADS:
        return _WORKLOADS[resource](new, old)
    return copy.deepcopy(new)
