"""Patch documents for kubelite: JSON merge patch, strategic merge patch, JSON patch.

Owns the three patch dialects a Kubernetes API server accepts on PATCH
(RFC 7386, Kubernetes strategic merge patch, RFC 6902).  Pure functions over
plain JSON-shaped dicts: they return new objects, never mutate their inputs,
and raise `PatchError` on a bad patch.  Knows nothing of HTTP or storage.

Strategic merge patch needs each list field's patch strategy and merge key;
those come from the core/v1 and apps/v1 struct tags (`patchStrategy`,
`patchMergeKey`) and are kept here as a small table per kind (`LIST_RULES`).
Lists without a rule are replaced, as upstream does.  JSON patch is the
`jsonpatch` library's (RFC 6902 as evanphx/json-patch is to kube-apiserver);
merge patch is ours (a dozen lines, the RFC's own algorithm).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

__all__ = [
    "PatchError",
    "merge_patch",
    "strategic_merge_patch",
    "json_patch",
    "JsonPatchNotApplied",
    "MAX_JSON_PATCH_OPERATIONS",
    "list_rule",
]


class PatchError(ValueError):
    """A patch that cannot be applied (bad shape, failed test, missing path)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------
# RFC 7386 JSON merge patch
# --------------------------------------------------------------------------

def merge_patch(obj: dict, patch: dict) -> dict:
    """Apply an RFC 7386 merge patch; `null` deletes, objects merge, the rest replaces."""
    return _merge7386(obj, patch)


def _merge7386(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge7386(result.get(key), value)
    # values carried over from target are shared; copy them so the caller's
    # object is never aliased by the result
    return {k: (v if k in patch else copy.deepcopy(v)) for k, v in result.items()}


# --------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ListRule:
    """How a list field merges: by `merge_key` for lists of objects, as a set when None."""

    merge_key: str | None


# Per container (containers, initContainers, ephemeralContainers).
_CONTAINER = {
    "ports": ListRule("containerPort"),
    "env": ListRule("name"),
    "volumeMounts": ListRule("mountPath"),
    "volumeDevices": ListRule("devicePath"),
}

_POD_SPEC = {
    "containers": ListRule("name"),
    "initContainers": ListRule("name"),
    "ephemeralContainers": ListRule("name"),
    "volumes": ListRule("name"),
    "imagePullSecrets": ListRule("name"),
    "hostAliases": ListRule("ip"),
    "topologySpreadConstraints": ListRule("topologyKey"),
    "schedulingGates": ListRule("name"),
    "resourceClaims": ListRule("name"),
    # tolerations carry no patch strategy upstream: replaced
}

_POD_STATUS = {
    "conditions": ListRule("type"),
    "podIPs": ListRule("ip"),
    "hostIPs": ListRule("ip"),
    "resourceClaimStatuses": ListRule("name"),
    # containerStatuses / initContainerStatuses have no merge key upstream:
    # a patch carries the whole list and replaces it
}

_OBJECT_META = {
    "ownerReferences": ListRule("uid"),
    "finalizers": ListRule(None),
}


def _nest(prefix: tuple[str, ...], table: dict) -> dict[tuple[str, ...], ListRule]:
    return {prefix + (k,): v for k, v in table.items()}


def _pod_template(prefix: tuple[str, ...]) -> dict[tuple[str, ...], ListRule]:
    rules = _nest(prefix + ("metadata",), _OBJECT_META)
    rules.update(_nest(prefix + ("spec",), _POD_SPEC))
    for c in ("containers", "initContainers", "ephemeralContainers"):
        rules.update(_nest(prefix + ("spec", c), _CONTAINER))
    return rules


def _kind_rules() -> dict[str, dict[tuple[str, ...], ListRule]]:
    meta = _nest(("metadata",), _OBJECT_META)
    conditions = {("status", "conditions"): ListRule("type")}
    pod = {**meta, **_pod_template(()), **_nest(("status",), _POD_STATUS)}
    workload = {**meta, **_pod_template(("spec", "template")), **conditions}
    return {
        "Pod": pod,
        "PodTemplate": {**meta, **_pod_template(("template",))},
        "Node": {
            **meta,
            ("spec", "podCIDRs"): ListRule(None),
            ("status", "conditions"): ListRule("type"),
            ("status", "addresses"): ListRule("type"),
            # spec.taints carries no patch strategy upstream: replaced
        },
        "Deployment": workload,
        "ReplicaSet": workload,
        "StatefulSet": workload,
        "DaemonSet": workload,
        "ReplicationController": workload,
        "Job": workload,
        "CronJob": {**meta, **_pod_template(("spec", "jobTemplate", "spec", "template"))},
        "Service": {**meta, ("spec", "ports"): ListRule("port"), **conditions},
        "ServiceAccount": {**meta, ("secrets",): ListRule("name"),
                           ("imagePullSecrets",): ListRule("name")},
        "Namespace": {**meta, **conditions},
        "PersistentVolumeClaim": {**meta, **conditions},
        "HorizontalPodAutoscaler": {**meta, **conditions},
    }


LIST_RULES = _kind_rules()


def list_rule(kind: str, path: tuple[str, ...]) -> ListRule | None:
    """The merge rule of the list at `path` (field names, list items not counted) in `kind`."""
    table = LIST_RULES.get(kind)
    if table is None:
        return _OBJECT_META_RULES.get(path)
    return table.get(path)


_OBJECT_META_RULES = _nest(("metadata",), _OBJECT_META)

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"
_DELETED = object()  # sentinel: "$patch: delete" removed this map


def strategic_merge_patch(obj: dict, patch: dict, kind: str) -> dict:
    """Apply a Kubernetes strategic merge patch to `obj` of the given `kind`.

    Lists with a merge key merge element by element; `finalizers` and other
    primitive merge lists are unions; all other lists are replaced.  Honours
    the `$patch` (merge, replace, delete), `$retainKeys`,
    `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` directives.
    """
    if not isinstance(obj, dict):
        raise PatchError("strategic merge patch: the object is not a JSON object")
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch: the patch is not a JSON object")
    result = _smp_map(obj, patch, kind, ())
    if result is _DELETED:
        return {}
    return result


def _smp_map(original: Any, patch: dict, kind: str, path: tuple[str, ...]) -> Any:
    original = original if isinstance(original, dict) else {}
    directive = patch.get(_DIRECTIVE)
    if directive is not None:
        if directive == "delete":
            return _DELETED
        if directive == "replace":
            rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
            return _smp_map({}, rest, kind, path)
        if directive != "merge":
            raise PatchError(f"Unknown patch type: {directive!r}")
    result = {k: copy.deepcopy(v) for k, v in original.items()}

    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("invalid $retainKeys directive: not a list")
        for key in list(result):
            if key not in retain:
                del result[key]

    orders: dict[str, list] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS):
            continue
        if key.startswith(_ORDER_PREFIX):
            if not isinstance(value, list):
                raise PatchError(f"invalid {key} directive: not a list")
            orders[key[len(_ORDER_PREFIX):]] = value
            continue
        if key.startswith(_DELETE_PRIMITIVE_PREFIX):
            field = key[len(_DELETE_PRIMITIVE_PREFIX):]
            if not isinstance(value, list):
                raise PatchError(f"invalid {key} directive: not a list")
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [v for v in current if v not in value]
            continue
        if key.startswith("$"):
            raise PatchError(f"unknown patch directive {key!r}")
        sub = path + (key,)
        if value is None:
            result.pop(key, None)
            continue
        rule = list_rule(kind, sub)
        if rule is not None and isinstance(value, list):
            result[key] = _smp_list(result.get(key), value, rule, kind, sub)
        elif isinstance(value, dict):
            merged = _smp_map(result.get(key), value, kind, sub)
            if merged is _DELETED:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)

    for field, order in orders.items():
        if isinstance(result.get(field), list):
            rule = list_rule(kind, path + (field,))
            result[field] = _apply_order(result[field], order, rule)
    return result


def _smp_list(original: Any, patch: list, rule: ListRule, kind: str,
              path: tuple[str, ...]) -> list:
    original = original if isinstance(original, list) else []
    if any(isinstance(e, dict) and e.get(_DIRECTIVE) == "replace" for e in patch):
        rest = [e for e in patch if not (isinstance(e, dict) and _DIRECTIVE in e and len(e) == 1)]
        return _smp_list([], rest, rule, kind, path)

    if rule.merge_key is None:
        merged: list = []
        for value in original + [e for e in patch if not isinstance(e, dict)]:
            if value not in merged:
                merged.append(copy.deepcopy(value))
        return merged

    key = rule.merge_key
    result = [copy.deepcopy(e) for e in original]
    for element in patch:
        if not isinstance(element, dict):
            raise PatchError(
                f"{'.'.join(path)}: list element {element!r} is not an object "
                f"(merge key {key!r})")
        directive = element.get(_DIRECTIVE)
        if directive is not None and directive not in ("delete", "merge"):
            raise PatchError(f"Unknown patch type: {directive!r}")
        if key not in element:
            raise PatchError(
                f"map: {element!r} does not contain declared merge key: {key}")
        ident = element[key]
        index = next((i for i, e in enumerate(result)
                      if isinstance(e, dict) and e.get(key) == ident), None)
        if directive == "delete":
            result = [e for e in result if not (isinstance(e, dict) and e.get(key) == ident)]
            continue
        body = {k: v for k, v in element.items() if k != _DIRECTIVE}
        if index is None:
            merged_element = _smp_map({}, body, kind, path)
            if merged_element is not _DELETED:
                result.append(merged_element)
        else:
            merged_element = _smp_map(result[index], body, kind, path)
            if merged_element is _DELETED:
                del result[index]
            else:
                result[index] = merged_element
    return result


def _apply_order(items: list, order: list, rule: ListRule | None) -> list:
    """Put the elements named in a `$setElementOrder` list first, in that order."""
    key = rule.merge_key if rule else None

    def ident(e: Any) -> Any:
        if key is not None and isinstance(e, dict):
            return e.get(key)
        return e

    wanted = [ident(o) for o in order]
    ranked = [e for w in wanted for e in items if ident(e) == w]
    seen = {id(e) for e in ranked}
    return ranked + [e for e in items if id(e) not in seen]


# --------------------------------------------------------------------------
# RFC 6902 JSON patch
# --------------------------------------------------------------------------

MAX_JSON_PATCH_OPERATIONS = 10000  # kube-apiserver's maxJSONPatchOperations


class JsonPatchNotApplied(PatchError):
    """A well-formed operation list that does not apply (a failed test, a missing path, ...)."""


def json_patch(obj: dict, ops: list) -> dict:
    """Apply an RFC 6902 operation list with the `jsonpatch` library; the result must be an object."""
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        doc = jsonpatch.apply_patch(obj, ops)  # works on a deep copy: `obj` is never touched
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError,
            KeyError, IndexError, AttributeError) as exc:
        raise JsonPatchNotApplied(f"json patch: {exc}") from None
    if not isinstance(doc, dict):
        raise JsonPatchNotApplied("json patch: the result is not a JSON object")
    return doc
