"""The Node authorizer (``--authorization-mode=Node``): what a kubelet identity may do.

Owns the decisions kube-apiserver's Node authorizer makes for users named
``system:node:<name>`` in group ``system:nodes`` (v1.33, AuthorizeNodeWithSelectors
on): Secrets/ConfigMaps read one at a time when a pod bound to the node uses
them, PVCs and service-account tokens likewise, its own Lease, its own Node
(read; create/update are left to NodeRestriction), pods listed with a
``spec.nodeName`` selector, and the static ``system:node`` rules for the rest.
Returns (allowed, reason) with upstream's reasons; a denial is "no opinion",
so RBAC still decides after it. Knows no HTTP and no storage beyond the graph.
"""

from __future__ import annotations

from . import rbac, selectors
from .nodegraph import CONFIGMAP, POD, PVC, SECRET, SERVICEACCOUNT, NodeGraph

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"


def node_identity(user: str, groups) -> tuple[bool, str]:
    """(is a node, node name) as upstream's NodeIdentifier: group ``system:nodes`` and the name prefix."""
    if NODES_GROUP not in (groups or ()):
        return False, ""
    if not user.startswith(NODE_USER_PREFIX):
        return False, ""
    return True, user[len(NODE_USER_PREFIX):]


def _field_terms(res: dict) -> list:
    raw = (res.get("fieldSelector") or {}).get("rawSelector") or ""
    try:
        return list(selectors.parse_field_selector(raw).terms)
    except selectors.SelectorError:
        return []


class NodeAuthorizer:
    """Decisions for node identities over one :class:`NodeGraph`."""

    def __init__(self, graph: NodeGraph):
        self.graph = graph

    def authorize(self, user: str, groups, attrs: dict) -> tuple[bool | None, str]:
        """True: allowed; None: no opinion (with a reason, possibly empty). Non-nodes: (None, "")."""
        is_node, node = node_identity(user, groups)
        if not is_node:
            return None, ""
        if not node:
            return None, f'unknown node for user "{user}"'
        res = attrs.get("resourceAttributes")
        if res is not None:
            group, resource = res.get("group") or "", res.get("resource") or ""
            handler = _HANDLERS.get((group, resource))
            if handler is not None:
                return handler(self, node, res)
        if any(rbac.rule_allows(rule, attrs) for rule in rbac.node_rules()):
            return True, ""
        return None, ""

    # -- shared shapes -------------------------------------------------------
    def _related(self, node: str, kind: str, res: dict) -> tuple[bool | None, str]:
        name = res.get("name") or ""
        if not name:
            return None, "No Object name found"
        if self.graph.has_path(node, kind, res.get("namespace") or "", name):
            return True, ""
        return None, f"no relationship found between node '{node}' and this object"

    def _read_namespaced(self, node: str, kind: str, res: dict) -> tuple[bool | None, str]:
        if res.get("verb") not in ("get", "list", "watch"):
            return None, "can only read resources of this type"
        if res.get("subresource"):
            return None, "cannot read subresource"
        if not res.get("namespace"):
            return None, "can only read namespaced object of this type"
        return self._related(node, kind, res)

    def _get_only(self, node: str, kind: str, res: dict) -> tuple[bool | None, str]:
        if res.get("verb") != "get":
            return None, "can only get individual resources of this type"
        if res.get("subresource"):
            return None, "cannot get subresource"
        return self._related(node, kind, res)

    # -- per resource --------------------------------------------------------
    def secrets(self, node, res):
        return self._read_namespaced(node, SECRET, res)

    def configmaps(self, node, res):
        return self._read_namespaced(node, CONFIGMAP, res)

    def pvcs(self, node, res):
        if res.get("subresource") == "status":
            if res.get("verb") not in ("update", "patch"):
                return None, "can only get/update/patch this type"
            return self._related(node, PVC, res)
        return self._get_only(node, PVC, res)

    def serviceaccounts(self, node, res):
        if res.get("verb") != "create" or not res.get("name"):
            return None, "can only create tokens for individual service accounts"
        if res.get("subresource") != "token":
            return None, "can only create token subresource of serviceaccount"
        return self._related(node, SERVICEACCOUNT, res)

    def leases(self, node, res):
        verb = res.get("verb")
        if verb not in ("get", "create", "update", "patch", "delete"):
            return None, "can only get, create, update, patch, or delete a node lease"
        if res.get("namespace") != NODE_LEASE_NAMESPACE:
            return None, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        if verb != "create" and res.get("name") != node:
            return None, "can only access node lease with the same name as the requesting node"
        return True, ""

    def nodes(self, node, res):
        verb, sub, name = res.get("verb"), res.get("subresource") or "", res.get("name") or ""
        if sub == "":
            if verb in ("create", "update", "patch"):
                return True, ""  # NodeRestriction limits the node to its own object
            if verb in ("get", "list", "watch"):
                if name == node:
                    return True, ""
                if not name:
                    return None, f"node '{node}' cannot read all nodes, only its own Node object"
                return None, f"node '{node}' cannot read '{name}', only its own Node object"
        elif sub == "status" and verb in ("update", "patch"):
            return True, ""
        return None, ""

    def pods(self, node, res):
        verb, sub = res.get("verb"), res.get("subresource") or ""
        if sub == "":
            if verb == "get":
                return self._get_only(node, POD, res)
            if verb in ("list", "watch"):
                for term in _field_terms(res):
                    if term.field == "spec.nodeName" and term.op in ("=", "==") and term.value == node:
                        return True, ""
                if res.get("name"):
                    return self._related(node, POD, res)
                return None, "can only list/watch pods with spec.nodeName field selector"
            if verb in ("create", "delete"):
                return True, ""  # NodeRestriction: mirror pods only / pods bound to the node
        elif sub == "status" and verb in ("update", "patch"):
            return True, ""
        elif sub == "eviction" and verb == "create":
            return True, ""
        return None, ""


_HANDLERS = {
    ("", "secrets"): NodeAuthorizer.secrets,
    ("", "configmaps"): NodeAuthorizer.configmaps,
    ("", "persistentvolumeclaims"): NodeAuthorizer.pvcs,
    ("", "serviceaccounts"): NodeAuthorizer.serviceaccounts,
    ("coordination.k8s.io", "leases"): NodeAuthorizer.leases,
    ("", "nodes"): NodeAuthorizer.nodes,
    ("", "pods"): NodeAuthorizer.pods,
}
