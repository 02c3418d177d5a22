"""Patch documents for kubelite: JSON merge patch, strategic merge patch, JSON patch.

Owns the three patch dialects a Kubernetes API server accepts on PATCH
(RFC 7386, Kubernetes strategic merge patch, RFC 6902).  Pure functions over
plain JSON-shaped dicts: they return new objects, never mutate their inputs,
and raise `PatchError` on a bad patch.  Knows nothing of HTTP or storage.

Strategic merge patch needs each list field's patch strategy and merge key;
those come from the core/v1 and apps/v1 struct tags (`patchStrategy`,
`patchMergeKey`) and are kept here as a small table per kind (`LIST_RULES`).
Lists without a rule are replaced, as upstream does.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PatchError",
    "merge_patch",
    "strategic_merge_patch",
    "json_patch",
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

_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")


def json_patch(obj: dict, ops: list) -> dict:
    """Apply an RFC 6902 operation list (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise PatchError("json patch: the patch is not a JSON array of operations")
    doc = copy.deepcopy(obj)
    for number, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"json patch: operation {number} is not an object")
        doc = _apply_op(doc, op)
    if not isinstance(doc, dict):
        raise PatchError("json patch: the result is not a JSON object")
    return doc


def _pointer(text: Any, what: str = "path") -> list[str]:
    if not isinstance(text, str):
        raise PatchError(f"json patch: {what} is missing or not a string")
    if text == "":
        return []
    if not text.startswith("/"):
        raise PatchError(f"json patch: {what} {text!r} is not a JSON pointer")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _require(op: dict, field: str) -> Any:
    if field not in op:
        raise PatchError(f"json patch: {op.get('op')} operation has no {field!r}")
    return op[field]


def _apply_op(doc: Any, op: dict) -> Any:
    kind = op.get("op")
    path = _pointer(op.get("path"))
    if kind == "add":
        return _add(doc, path, copy.deepcopy(_require(op, "value")))
    if kind == "remove":
        _, doc = _remove(doc, path)
        return doc
    if kind == "replace":
        value = copy.deepcopy(_require(op, "value"))
        _get(doc, path)  # must exist
        if not path:
            return value
        _, doc = _remove(doc, path)
        return _add(doc, path, value)
    if kind == "move":
        source = _pointer(op.get("from"), "from")
        if source == path:
            _get(doc, source)
            return doc
        if path[:len(source)] == source:
            raise PatchError("json patch: cannot move a value into one of its children")
        value, doc = _remove(doc, source)
        return _add(doc, path, value)
    if kind == "copy":
        source = _pointer(op.get("from"), "from")
        return _add(doc, path, copy.deepcopy(_get(doc, source)))
    if kind == "test":
        expected = _require(op, "value")
        actual = _get(doc, path)
        if not _json_equal(actual, expected):
            raise PatchError(
                f"json patch: test failed: value at {op['path']!r} is not {expected!r}")
        return doc
    raise PatchError(f"json patch: unknown operation {kind!r}")


def _describe(path: list[str]) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)


def _get(doc: Any, path: list[str]) -> Any:
    node = doc
    for i, part in enumerate(path):
        if isinstance(node, dict):
            if part not in node:
                raise PatchError(f"json patch: path {_describe(path[:i + 1])} does not exist")
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, path[:i + 1], allow_end=False)]
        else:
            raise PatchError(f"json patch: path {_describe(path[:i + 1])} does not exist")
    return node


def _index(items: list, part: str, where: list[str], *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(items)
    if not _INDEX.match(part):
        raise PatchError(f"json patch: {_describe(where)}: {part!r} is not an array index")
    index = int(part)
    limit = len(items) if allow_end else len(items) - 1
    if index > limit:
        raise PatchError(f"json patch: {_describe(where)}: index {index} is out of range")
    return index


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise PatchError(f"json patch: parent of {_describe(path)} is not a container")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise PatchError("json patch: cannot remove the whole document")
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"json patch: path {_describe(path)} does not exist")
        return parent.pop(last), doc
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, allow_end=False)), doc
    raise PatchError(f"json patch: path {_describe(path)} does not exist")


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 equals 1.0, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
