"""Validation (and the defaults that go with it) of ConfigMaps, Secrets, named objects and workloads.

Owns config keys, Secret data (base64, `stringData` folded into `data` as
the API server's conversion does), Namespace / ServiceAccount names, and
Deployment / ReplicaSet defaults, selectors and their pod templates.
"""

from __future__ import annotations

import base64
import binascii
import copy
from typing import Callable

from ..defaults import apply_pod_defaults
from .fielderrors import (CONFIG_KEY_MSG, CONFIG_KEY_RE, AdmissionError, FieldError, invalid, label_errors,
                          name_errors, name_of, subdomain_errors)
from .podvalidation import validate_pod_spec

def _key_errors(obj: dict, fields: tuple[str, ...]) -> list[FieldError]:
    errors = []
    seen: set[str] = set()
    for field_name in fields:
        for key in (obj.get(field_name) or {}):
            if len(key) > 253 or not CONFIG_KEY_RE.match(key):
                errors.append(FieldError(f"{field_name}[{key}]", "Invalid", key, CONFIG_KEY_MSG))
            elif key in seen:
                errors.append(FieldError(f"{field_name}[{key}]", "Invalid", key,
                                         "duplicate of key present in another data field"))
            seen.add(key)
    return errors


def _admit_configmap(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    errors = name_errors(obj, subdomain_errors) + _key_errors(obj, ("data", "binaryData"))
    if errors:
        raise invalid("ConfigMap", name_of(obj), errors)
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
    errors = name_errors(obj, subdomain_errors) + _key_errors(obj, ("data",))
    if errors:
        raise invalid("Secret", name_of(obj), errors)
    return obj


def _admit_named(kind: str, check: Callable[[str, str], list[FieldError]]) -> Callable[[dict], dict]:
    def admit(obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        errors = name_errors(obj, check)
        if errors:
            raise invalid(kind, name_of(obj), errors)
        return obj
    return admit


def _matches_selector(selector: dict, labels: dict) -> bool:
    from ..selectors import SelectorError, label_selector_from_dict
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
        template["spec"] = apply_pod_defaults(copy.deepcopy(template["spec"]))
    return obj


def _validate_workload(obj: dict, kind: str, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errors = name_errors(obj, subdomain_errors)
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
            raise invalid(kind, name_of(obj), errors, group="apps")
        return obj
    return admit


SIMPLE: dict[str, Callable[[dict], dict]] = {
    "configmaps": _admit_configmap,
    "secrets": _admit_secret,
    "namespaces": _admit_named("Namespace", label_errors),
    "serviceaccounts": _admit_named("ServiceAccount", subdomain_errors),
}
WORKLOADS = {"deployments": _admit_workload("Deployment"),
              "replicasets": _admit_workload("ReplicaSet")}
