"""Which node labels a node identity may set: the NodeRestriction admission plugin's rule, as data.

A kubelet (``system:node:<name>``) may set any label outside the ``kubernetes.io``
and ``k8s.io`` namespaces, and inside them only the kubelet's own set. Pure:
no API, no logging; the node controller decides what to do with the answer.
"""

from __future__ import annotations

import re

KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
    "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
})
KUBELET_PREFIXES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")
FORBIDDEN_PREFIXES = ("node-restriction.kubernetes.io/",)


def _namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def node_may_set(key: str) -> bool:
    """True when NodeRestriction lets a node set label ``key`` on its own Node."""
    if key.startswith(FORBIDDEN_PREFIXES):
        return False
    domain = _namespace(key)
    restricted = any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
    return not restricted or key in KUBELET_LABELS or key.startswith(KUBELET_PREFIXES)


def split(labels: dict[str, str], node_identity: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(labels to set, labels left out because a node identity may not set them)."""
    if not node_identity:
        return dict(labels), {}
    kept = {k: v for k, v in labels.items() if node_may_set(k)}
    return kept, {k: v for k, v in labels.items() if k not in kept}


_REFUSED = re.compile(r"not allowed to (?:set|modify) the following labels?: (.+?)(?:$|\")")


def refused_labels(message: str) -> list[str]:
    """The labels an API server's refusal names ("... is not allowed to set the following labels: a, b")."""
    match = _REFUSED.search(message or "")
    return [part.strip() for part in match.group(1).split(",") if part.strip()] if match else []
