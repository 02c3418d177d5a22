"""The NodeRestriction admission plugin: a node may change only what is its own.

Owns the checks kube-apiserver's NodeRestriction makes of requests by a node
identity (``system:node:<name>`` in ``system:nodes``): its own Node (labels
outside the kubelet's set and taint changes refused), its own Lease, status
and deletion of pods bound to it, mirror pods only, evictions of its pods,
and TokenRequests bound to one of its pods. Messages are upstream's. Other
users pass untouched. Knows no HTTP; reads through a store ``view``.
"""

from __future__ import annotations

from ..errors import ApiError
from ..nodeauthz import NODE_LEASE_NAMESPACE, node_identity
from .fielderrors import forbidden

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

#: Labels a kubelet may set on its Node (k8s.io/kubelet/pkg/apis, kubeletapis.IsKubeletLabel).
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
NODE_RESTRICTION_NAMESPACE = "node-restriction.kubernetes.io"


def _namespace(label: str) -> str:
    return label.split("/", 1)[0] if "/" in label else ""


def _in(ns: str, domain: str) -> bool:
    return ns == domain or ns.endswith("." + domain)


def is_kubelet_label(label: str) -> bool:
    ns = _namespace(label)
    return label in KUBELET_LABELS or any(_in(ns, d) for d in KUBELET_LABEL_NAMESPACES)


def forbidden_labels(labels) -> list[str]:
    """The labels of ``labels`` a node may not set (sorted, as upstream lists them)."""
    out = []
    for label in labels:
        ns = _namespace(label)
        if _in(ns, NODE_RESTRICTION_NAMESPACE):
            out.append(label)
        elif (_in(ns, "kubernetes.io") or _in(ns, "k8s.io")) and not is_kubelet_label(label):
            out.append(label)
    return sorted(set(out))


def _modified(new: dict | None, old: dict | None) -> set[str]:
    new, old = new or {}, old or {}
    return {k for k in set(new) | set(old) if new.get(k) != old.get(k) or (k in new) != (k in old)}


class _Request:
    def __init__(self, node: str, op: str, resource: str, sub: str, name: str, namespace: str,
                 obj: dict | None, old: dict | None, view):
        self.node, self.op, self.resource, self.sub = node, op, resource, sub
        self.name, self.namespace, self.obj, self.old, self.view = name, namespace, obj, old, view

    def deny(self, why: str, group: str = "") -> ApiError:
        return forbidden(self.resource, self.name, why, group)


def admit(user, op: str, resource: str, sub: str | None, obj: dict | None, old: dict | None, view) -> None:
    """Raise a 403 :class:`ApiError` when a node may not make this request; otherwise return.

    ``op``: create / update / delete; ``resource``: the store key; ``obj``: the new object
    (create/update, for subresources the request body), ``old``: the stored one.
    """
    if user is None:
        return
    is_node, node = node_identity(user.name, user.groups)
    if not is_node:
        return
    meta = (obj or old or {}).get("metadata") or {}
    name = meta.get("name") or ((old or {}).get("metadata") or {}).get("name") or ""
    req = _Request(node, op, resource, sub or "", name, meta.get("namespace") or "", obj, old, view)
    if not node:
        raise req.deny(f'could not determine node from user "{user.name}"')
    check = _CHECKS.get(resource)
    if check is not None:
        check(req)


def _admit_node(req: _Request) -> None:
    if req.name != req.node:
        raise req.deny(f'node "{req.node}" is not allowed to modify node "{req.name}"')
    if req.sub:
        return
    if req.op == "create":
        bad = forbidden_labels(_modified(((req.obj or {}).get("metadata") or {}).get("labels"), None))
        if bad:
            raise req.deny(f'node "{req.node}" is not allowed to set the following labels: {", ".join(bad)}')
    elif req.op == "update":
        new, old = req.obj or {}, req.old or {}
        if ((new.get("spec") or {}).get("taints") or []) != ((old.get("spec") or {}).get("taints") or []):
            raise req.deny(f'node "{req.node}" is not allowed to modify taints')
        changed = _modified((new.get("metadata") or {}).get("labels"), (old.get("metadata") or {}).get("labels"))
        bad = forbidden_labels(changed)
        if bad:
            raise req.deny(f"is not allowed to modify labels: {', '.join(bad)}")


def _admit_lease(req: _Request) -> None:
    group = "coordination.k8s.io"
    if req.namespace != NODE_LEASE_NAMESPACE:
        raise req.deny(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace', group)
    if req.name != req.node:
        raise req.deny("can only access node lease with the same name as the requesting node", group)


def _admit_pod(req: _Request) -> None:
    node = req.node
    if req.sub == "status":
        if ((req.old or {}).get("spec") or {}).get("nodeName") != node:
            raise req.deny(f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
        return
    if req.sub == "eviction":
        if ((req.old or {}).get("spec") or {}).get("nodeName") != node:
            raise req.deny(f'node "{node}" can only evict pods with spec.nodeName set to itself')
        return
    if req.sub:
        return
    if req.op == "delete":
        if ((req.old or {}).get("spec") or {}).get("nodeName") != node:
            raise req.deny(f'node "{node}" can only delete pods with spec.nodeName set to itself')
        return
    if req.op != "create":
        raise req.deny(f'unexpected operation "UPDATE", node "{node}" can only create and delete mirror pods')
    _admit_mirror_pod(req)


def _admit_mirror_pod(req: _Request) -> None:
    node, pod = req.node, req.obj or {}
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if MIRROR_ANNOTATION not in (meta.get("annotations") or {}):
        raise req.deny(f'pod does not have "{MIRROR_ANNOTATION}" annotation, node "{node}" can only create '
                       f'mirror pods')
    if spec.get("nodeName") != node:
        raise req.deny(f'node "{node}" can only create pods with spec.nodeName set to itself')
    owners = meta.get("ownerReferences") or []
    if len(owners) != 1:
        raise req.deny(f'node "{node}" can only create pods with a single owner reference set to itself')
    owner = owners[0]
    node_obj = req.view.get("nodes", "", node) or {}
    if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node) or \
            owner.get("uid") != (node_obj.get("metadata") or {}).get("uid"):
        raise req.deny(f'node "{node}" can only create pods with an owner reference set to itself')
    if spec.get("serviceAccountName"):
        raise req.deny(f'node "{node}" can not create pods that reference a service account')
    from ..nodegraph import pod_references  # the graph's reading of a pod spec is the one to check
    kinds = {kind for kind, _ in pod_references(pod)}
    for kind, word in (("secret", "secrets"), ("configmap", "configmaps"), ("pvc", "persistentvolumeclaims")):
        if kind in kinds:
            raise req.deny(f'node "{node}" can not create pods that reference {word}')


def _admit_token(req: _Request) -> None:
    if req.op != "create" or req.sub != "token":
        return
    spec = (req.obj or {}).get("spec") or {}
    ref = spec.get("boundObjectRef") or {}
    if not ref or ref.get("apiVersion", "v1") != "v1" or ref.get("kind") != "Pod" or not ref.get("name"):
        raise req.deny("node requested token not bound to a pod")
    if not ref.get("uid"):
        raise req.deny("node requested token with a pod binding without a uid")
    pod = req.view.get("pods", req.namespace, ref["name"])
    if pod is None:
        raise ApiError(404, "NotFound", f'pods "{ref["name"]}" not found', {"name": ref["name"], "kind": "pods"})
    if ref["uid"] != pod["metadata"].get("uid"):
        raise req.deny(f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                       f"The object might have been deleted and then recreated")
    if (pod.get("spec") or {}).get("nodeName") != req.node:
        raise req.deny("node requested token bound to a pod scheduled on a different node")


_CHECKS = {
    "nodes": _admit_node,
    "leases": _admit_lease,
    "pods": _admit_pod,
    "serviceaccounts": _admit_token,
}
