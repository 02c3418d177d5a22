"""Downward-API values: ``fieldRef`` and ``resourceFieldRef`` of a pod dict, as the kubelet renders them.

Maps (labels, annotations) are ``key="value"`` lines sorted by key, the value
quoted as Go's ``%q`` does. Resource values are whole units rounded up after
the divisor; limits a container does not set default to the node's allocatable.
"""

from __future__ import annotations

import re

from vkcmd.pods.quantity import milli_value_ceil, parse_quantity, value_ceil

_SUBSCRIPTED = re.compile(r"(metadata\.(?:labels|annotations))\[(['\"])(.*)\2\]", re.DOTALL)
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}


class FieldError(ValueError):
    """A field path or resource the downward API does not provide."""


def go_quote(text: str) -> str:
    """``text`` in double quotes with Go's ``strconv.Quote`` escapes."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch != " " and not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_map(values: dict | None) -> str:
    """The kubelet's rendering of labels or annotations: sorted ``key="value"`` lines, no final newline."""
    return "\n".join(f"{key}={go_quote(str(values[key]))}" for key in sorted(values or {}))


def field_value(pod: dict, field_path: str, node_facts: dict) -> str:
    """The value of a ``fieldRef`` for ``pod`` (env and downwardAPI volumes alike)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    subscripted = _SUBSCRIPTED.fullmatch(field_path or "")
    if subscripted:
        which, _, key = subscripted.groups()
        return str((meta.get(which.split(".")[1]) or {}).get(key, ""))
    host_ip = node_facts.get("hostIP") or status.get("hostIP") or ""
    pod_ip = node_facts.get("podIP") or status.get("podIP") or host_ip
    simple = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace") or "default",
        "metadata.uid": lambda: meta.get("uid", ""),
        "metadata.labels": lambda: format_map(meta.get("labels")),
        "metadata.annotations": lambda: format_map(meta.get("annotations")),
        "spec.nodeName": lambda: spec.get("nodeName") or node_facts.get("nodeName", ""),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName") or spec.get("serviceAccount") or "",
        "status.hostIP": lambda: host_ip,
        "status.hostIPs": lambda: ",".join(node_facts.get("hostIPs") or [host_ip]),
        "status.podIP": lambda: pod_ip,
        "status.podIPs": lambda: ",".join(node_facts.get("podIPs") or [pod_ip]),
    }
    if field_path not in simple:
        raise FieldError(f"unsupported fieldPath: {field_path}")
    return str(simple[field_path]())


def _container(pod: dict, name: str) -> dict:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            return container
    for container in (pod.get("spec") or {}).get("initContainers") or []:
        if container.get("name") == name:
            return container
    raise FieldError(f"container {name!r} not found in the pod")


def resource_value(pod: dict, container_name: str, ref: dict, node_facts: dict) -> str:
    """The value of a ``resourceFieldRef`` (its ``containerName`` wins over ``container_name``)."""
    container = _container(pod, ref.get("containerName") or container_name)
    resource = ref.get("resource") or ""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise FieldError(f"unsupported container resource : {resource}")
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if kind == "limits":
        raw = limits.get(name)
        if raw is None:  # the kubelet's default: the node's allocatable
            raw = (node_facts.get("allocatable") or {}).get(name, 0)
    else:  # the API server defaults requests to limits
        raw = requests.get(name, limits.get(name, 0))
    try:
        quantity = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except ValueError as exc:
        raise FieldError(f"resourceFieldRef {resource}: {exc}") from None
    if name == "cpu":
        amount, unit = milli_value_ceil(quantity), milli_value_ceil(divisor)
    else:
        amount, unit = value_ceil(quantity), value_ceil(divisor)
    if unit <= 0:
        raise FieldError(f"resourceFieldRef {resource}: divisor must be positive")
    return str(-(-amount // unit))
