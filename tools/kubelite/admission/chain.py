"""The admission chain: for each resource, defaulting, the mutating plugins, then validation.

Owns the order, as kube-apiserver's plugin chain: API defaulting,
ServiceAccount, DefaultTolerationSeconds, Priority's defaults, then
validation (`podvalidation`, `objects`).  Returns new dicts; never mutates
its inputs.  NodeRestriction (`noderestriction`) runs before, on the
requesting user.
"""

from __future__ import annotations

import copy
from typing import Any

from ..defaults import apply_pod_defaults, qos_class
from . import serviceaccount, tolerationseconds
from .fielderrors import FieldError, invalid, name_errors, name_of, subdomain_errors
from .objects import SIMPLE, WORKLOADS
from .podvalidation import validate_pod_spec, validate_pod_update


def default_pod_spec(spec: dict) -> dict:
    """A copy of a PodSpec with the API server's defaults filled in."""
    return apply_pod_defaults(copy.deepcopy(spec))


def _admit_pod_create(pod: dict, view: Any) -> dict:
    pod = copy.deepcopy(pod)
    if not isinstance(pod.get("spec"), dict):
        raise invalid("Pod", name_of(pod), [FieldError("spec.containers", "Required")])
    pod["spec"] = default_pod_spec(pod["spec"])
    serviceaccount.admit_pod(pod, view)
    tolerationseconds.default_tolerations(pod)
    pod["spec"].setdefault("priority", 0)
    pod["spec"].setdefault("preemptionPolicy", "PreemptLowerPriority")
    errors = name_errors(pod, subdomain_errors) + validate_pod_spec(pod["spec"])
    if errors:
        raise invalid("Pod", name_of(pod), errors)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod["spec"])}
    return pod


def _admit_pod_update(old: dict, new: dict) -> dict:
    new = copy.deepcopy(new)
    if not isinstance(new.get("spec"), dict):
        new["spec"] = {}
    new["spec"] = default_pod_spec(new["spec"])
    tolerationseconds.default_tolerations(new)  # DefaultTolerationSeconds admits updates too
    errors = validate_pod_update(old, new)
    if not errors:
        errors = validate_pod_spec(new["spec"])
    if errors:
        raise invalid("Pod", name_of(new) or name_of(old), errors)
    return new


def admit_create(resource: str, obj: dict, view: Any) -> dict:
    """The object as it would be stored on create, or raise `AdmissionError`.

    `resource` is the plural ("pods", "configmaps", ...); `view` offers
    `get(resource, namespace, name)` and `list(resource, namespace=None)`.
    """
    if resource == "pods":
        return _admit_pod_create(obj, view)
    if resource in SIMPLE:
        return SIMPLE[resource](obj)
    if resource in WORKLOADS:
        return WORKLOADS[resource](obj, None)
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
    if resource in SIMPLE:
        return SIMPLE[resource](new)
    if resource in WORKLOADS:
        return WORKLOADS[resource](new, old)
    return copy.deepcopy(new)
