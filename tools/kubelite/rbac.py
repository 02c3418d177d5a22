"""RBAC authorization for kubelite: rbac.authorization.k8s.io/v1 semantics, and the default policy.

Owns `authorize` (a SubjectAccessReview-shaped request against the Roles,
ClusterRoles and their bindings a read-only `view` holds), the 403 message
the API server words from a denial (`forbidden_message`), and
`bootstrap_objects`, the default ClusterRoles and ClusterRoleBindings of a
kubeadm cluster that matter to vkcmd.  Knows nothing of HTTP or storage: the
`view` is read through `list(resource)` only.

Cost: the bindings are indexed by subject once and reused while the RBAC
objects are unchanged (fingerprint of names and resourceVersions, or the
view's `revision(resource)` when it has one), so an allowed request costs a
few dict lookups plus the rules of the bindings that name the caller.
`system:masters` is allowed before RBAC is consulted, as upstream does.
`aggregationRule` is not evaluated; the bootstrap `view`/`edit`/`admin`
roles carry their aggregated rules directly.
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Authorizer",
    "authorize",
    "forbidden_message",
    "rule_allows",
    "bootstrap_objects",
    "MASTERS_GROUP",
]

MASTERS_GROUP = "system:masters"
RBAC_RESOURCES = ("clusterroles", "clusterrolebindings", "roles", "rolebindings")
_RBAC_GROUP = "rbac.authorization.k8s.io"


# --------------------------------------------------------------------------
# rule matching
# --------------------------------------------------------------------------

def _has(items: list | None, value: str) -> bool:
    return bool(items) and ("*" in items or value in items)


def _resource_matches(rule_resources: list | None, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for item in rule_resources or []:
        if item == "*" or item == combined:
            return True
        if subresource and item == f"*/{subresource}":
            return True
    return False


def _url_matches(rule_urls: list | None, path: str) -> bool:
    for item in rule_urls or []:
        if item == "*" or item == path:
            return True
        if item.endswith("*") and path.startswith(item[:-1]):
            return True
    return False


def rule_allows(rule: dict, attrs: dict) -> bool:
    """True when one PolicyRule grants the SubjectAccessReview-style `attrs`."""
    res = attrs.get("resourceAttributes")
    if res is not None:
        if not _has(rule.get("verbs"), res.get("verb") or ""):
            return False
        if not _has(rule.get("apiGroups"), res.get("group") or ""):
            return False
        if not _resource_matches(rule.get("resources"), res.get("resource") or "",
                                 res.get("subresource") or ""):
            return False
        names = rule.get("resourceNames")
        return not names or (res.get("name") or "") in names
    non = attrs.get("nonResourceAttributes") or {}
    return (_has(rule.get("verbs"), non.get("verb") or "")
            and _url_matches(rule.get("nonResourceURLs"), non.get("path") or ""))


# --------------------------------------------------------------------------
# the index
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Grant:
    """A binding naming one subject: where it applies and which role it grants."""

    binding_kind: str          # "ClusterRoleBinding" | "RoleBinding"
    binding_name: str
    namespace: str             # "" for ClusterRoleBindings
    role_kind: str             # "ClusterRole" | "Role"
    role_name: str
    subject: str               # as upstream describes it: `User "x"`, `ServiceAccount "ns/n"`

    def describe(self) -> str:
        name = self.binding_name if not self.namespace else f"{self.binding_name}/{self.namespace}"
        return f'{self.binding_kind} "{name}" of {self.role_kind} "{self.role_name}" to {self.subject}'


@dataclass
class _Index:
    users: dict[str, list[_Grant]] = field(default_factory=dict)
    groups: dict[str, list[_Grant]] = field(default_factory=dict)
    cluster_roles: dict[str, list[dict]] = field(default_factory=dict)
    roles: dict[tuple[str, str], list[dict]] = field(default_factory=dict)


def _subject_keys(subject: dict, binding_namespace: str) -> tuple[str, str, str] | None:
    """(table, key, description) for a binding subject, or None if it names nobody."""
    kind = subject.get("kind")
    name = subject.get("name") or ""
    if kind == "User":
        return "users", name, f'User "{name}"'
    if kind == "Group":
        return "groups", name, f'Group "{name}"'
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        if not namespace:
            return None
        return ("users", f"system:serviceaccount:{namespace}:{name}",
                f'ServiceAccount "{name}/{namespace}"')
    return None


def _build_index(objects: dict[str, list[dict]]) -> _Index:
    index = _Index()
    for role in objects["clusterroles"]:
        index.cluster_roles[role["metadata"]["name"]] = role.get("rules") or []
    for role in objects["roles"]:
        meta = role["metadata"]
        index.roles[(meta.get("namespace") or "", meta["name"])] = role.get("rules") or []
    for kind, resource in (("ClusterRoleBinding", "clusterrolebindings"),
                           ("RoleBinding", "rolebindings")):
        for binding in objects[resource]:
            meta = binding.get("metadata") or {}
            namespace = meta.get("namespace") or "" if kind == "RoleBinding" else ""
            ref = binding.get("roleRef") or {}
            for subject in binding.get("subjects") or []:
                keys = _subject_keys(subject, namespace)
                if keys is None:
                    continue
                table, key, description = keys
                grant = _Grant(kind, meta.get("name") or "", namespace,
                               ref.get("kind") or "ClusterRole", ref.get("name") or "",
                               description)
                getattr(index, table).setdefault(key, []).append(grant)
    return index


def _fingerprint(view: Any) -> tuple[tuple, dict[str, list[dict]] | None]:
    """A cheap change key for the RBAC objects; the listed objects when they were read."""
    revision = getattr(view, "revision", None)
    if callable(revision):
        return tuple(revision(r) for r in RBAC_RESOURCES), None
    objects = {r: view.list(r) for r in RBAC_RESOURCES}
    key = tuple(
        tuple(sorted(((o.get("metadata") or {}).get("namespace") or "",
                      (o.get("metadata") or {}).get("name") or "",
                      str((o.get("metadata") or {}).get("resourceVersion") or id(o)))
                     for o in objects[r]))
        for r in RBAC_RESOURCES)
    return key, objects


class Authorizer:
    """RBAC decisions over one view, with the subject index cached between calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._index = _Index()

    def _current(self, view: Any) -> _Index:
        key, objects = _fingerprint(view)
        with self._lock:
            if key != self._key:
                if objects is None:
                    objects = {r: view.list(r) for r in RBAC_RESOURCES}
                self._index = _build_index(objects)
                self._key = key
            return self._index

    def authorize(self, user: str, groups: list[str], attrs: dict, view: Any) -> tuple[bool, str]:
        if MASTERS_GROUP in (groups or ()):
            return True, ""
        index = self._current(view)
        res = attrs.get("resourceAttributes")
        namespace = (res or {}).get("namespace") or ""
        candidates = list(index.users.get(user, ()))
        for group in groups or ():
            candidates.extend(index.groups.get(group, ()))
        errors: list[str] = []
        # ClusterRoleBindings first, then RoleBindings of the request's namespace
        for wanted in ("ClusterRoleBinding", "RoleBinding"):
            for grant in candidates:
                if grant.binding_kind != wanted:
                    continue
                if wanted == "RoleBinding" and (not res or grant.namespace != namespace):
                    continue
                rules = self._rules(index, grant, errors)
                if any(rule_allows(rule, attrs) for rule in rules):
                    return True, f"RBAC: allowed by {grant.describe()}"
        return False, ("RBAC: " + ", ".join(errors)) if errors else ""

    @staticmethod
    def _rules(index: _Index, grant: _Grant, errors: list[str]) -> list[dict]:
        if grant.role_kind == "Role":
            rules = index.roles.get((grant.namespace, grant.role_name))
            if rules is None:
                errors.append(f'role.{_RBAC_GROUP} "{grant.role_name}" not found')
            return rules or []
        rules = index.cluster_roles.get(grant.role_name)
        if rules is None:
            errors.append(f'clusterrole.{_RBAC_GROUP} "{grant.role_name}" not found')
        return rules or []


_authorizers: "weakref.WeakKeyDictionary[Any, Authorizer]" = weakref.WeakKeyDictionary()
_authorizers_lock = threading.Lock()


def authorize(user: str, groups: list[str], attrs: dict, view: Any) -> tuple[bool, str]:
    """Decide a SubjectAccessReview spec (`resourceAttributes` or `nonResourceAttributes`).

    Returns (allowed, reason) with the reason worded as upstream's RBAC
    authorizer words it (`RBAC: allowed by ClusterRoleBinding "x" of ...`;
    empty on a plain denial).  One index is kept per view object.
    """
    try:
        with _authorizers_lock:
            authorizer = _authorizers.get(view)
            if authorizer is None:
                authorizer = _authorizers[view] = Authorizer()
    except TypeError:  # a view that cannot be weakly referenced: no cache
        authorizer = Authorizer()
    return authorizer.authorize(user, groups, attrs, view)


def forbidden_message(user: str, attrs: dict, reason: str = "") -> str:
    """The 403 message the API server gives for a denied request."""
    res = attrs.get("resourceAttributes")
    if res is None:
        non = attrs.get("nonResourceAttributes") or {}
        text = f'forbidden: User "{user}" cannot {non.get("verb", "")} path "{non.get("path", "")}"'
    else:
        resource = res.get("resource") or ""
        sub = res.get("subresource") or ""
        group = res.get("group") or ""
        name = res.get("name") or ""
        qualified = f"{resource}.{group}" if group else resource
        what = f'{qualified} "{name}"' if name else qualified
        scope = (f'in the namespace "{res["namespace"]}"' if res.get("namespace")
                 else "at the cluster scope")
        full = f"{resource}/{sub}" if sub else resource
        text = (f'{what} is forbidden: User "{user}" cannot {res.get("verb", "")} resource '
                f'"{full}" in API group "{group}" {scope}')
    return f"{text}: {reason}" if reason else text


# --------------------------------------------------------------------------
# default policy
# --------------------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def _rule(verbs: list[str], groups: list[str], resources: list[str],
          names: list[str] | None = None) -> dict:
    rule = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _urls(verbs: list[str], urls: list[str]) -> dict:
    return {"nonResourceURLs": urls, "verbs": verbs}


_VIEW_RULES = [
    _rule(_READ, [""], ["configmaps", "endpoints", "persistentvolumeclaims",
                        "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                        "replicationcontrollers/scale", "serviceaccounts", "services",
                        "services/status"]),
    _rule(_READ, [""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log",
                        "pods/status", "replicationcontrollers/status", "resourcequotas",
                        "resourcequotas/status"]),
    _rule(_READ, [""], ["namespaces"]),
    _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
    _rule(_READ, ["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status",
                            "deployments", "deployments/scale", "deployments/status",
                            "replicasets", "replicasets/scale", "replicasets/status",
                            "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    _rule(_READ, ["autoscaling"], ["horizontalpodautoscalers",
                                   "horizontalpodautoscalers/status"]),
    _rule(_READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    _rule(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    _rule(_READ, ["coordination.k8s.io"], ["leases"]),
]

_EDIT_RULES = _VIEW_RULES + [
    _rule(_READ, [""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy",
                        "secrets", "services/proxy"]),
    _rule(["impersonate"], [""], ["serviceaccounts"]),
    _rule(_WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    _rule(["create"], [""], ["pods/eviction"]),
    _rule(_WRITE, [""], ["configmaps", "events", "persistentvolumeclaims",
                         "replicationcontrollers", "replicationcontrollers/scale", "secrets",
                         "serviceaccounts", "services", "services/proxy"]),
    _rule(["create"], [""], ["serviceaccounts/token"]),
    _rule(_WRITE, ["apps"], ["daemonsets", "deployments", "deployments/rollback",
                             "deployments/scale", "replicasets", "replicasets/scale",
                             "statefulsets", "statefulsets/scale"]),
    _rule(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    _rule(_WRITE, ["batch"], ["cronjobs", "jobs"]),
    _rule(_WRITE, ["policy"], ["poddisruptionbudgets"]),
    _rule(_WRITE + _READ, ["coordination.k8s.io"], ["leases"]),
]

_ADMIN_RULES = _EDIT_RULES + [
    _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    _rule(_WRITE + _READ, [_RBAC_GROUP], ["rolebindings", "roles"]),
]

_NODE_RULES = [
    _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews",
                                                  "subjectaccessreviews"]),
    _rule(_READ, [""], ["services"]),
    _rule(["create", "get", "list", "watch"], [""], ["nodes"]),
    _rule(["patch", "update"], [""], ["nodes/status"]),
    _rule(["patch", "update"], [""], ["nodes"]),
    _rule(["create", "patch", "update"], [""], ["events"]),
    _rule(_READ, [""], ["pods"]),
    _rule(["create", "delete"], [""], ["pods"]),
    _rule(["patch", "update"], [""], ["pods/status"]),
    _rule(["create"], [""], ["pods/eviction"]),
    _rule(_READ, [""], ["configmaps", "secrets"]),
    _rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
    _rule(["get"], [""], ["endpoints"]),
    _rule(["create", "get", "list", "watch"], ["certificates.k8s.io"],
          ["certificatesigningrequests"]),
    _rule(["create", "delete", "get", "patch", "update"], ["coordination.k8s.io"], ["leases"]),
    _rule(["get"], ["storage.k8s.io"], ["volumeattachments"]),
    _rule(["create"], [""], ["serviceaccounts/token"]),
    _rule(["get", "patch", "update"], [""], ["persistentvolumeclaims/status"]),
    _rule(_READ, ["storage.k8s.io"], ["csidrivers"]),
    _rule(["create", "delete", "get", "patch", "update"], ["storage.k8s.io"], ["csinodes"]),
    _rule(_READ, ["node.k8s.io"], ["runtimeclasses"]),
]

_CLUSTER_ROLES: dict[str, list[dict]] = {
    "cluster-admin": [_rule(["*"], ["*"], ["*"]), _urls(["*"], ["*"])],
    "admin": _ADMIN_RULES,
    "edit": _EDIT_RULES,
    "view": _VIEW_RULES,
    "system:basic-user": [
        _rule(["create"], ["authorization.k8s.io"],
              ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
        _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
    ],
    "system:discovery": [_urls(["get"], [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
        "/openapi/*", "/readyz", "/version", "/version/"])],
    "system:public-info-viewer": [_urls(["get"], [
        "/healthz", "/livez", "/readyz", "/version", "/version/"])],
    "system:monitoring": [_urls(["get"], [
        "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis",
        "/readyz", "/readyz/*"])],
    "system:auth-delegator": [
        _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
    ],
    "system:kubelet-api-admin": [
        _rule(_READ, [""], ["nodes"]),
        _rule(["proxy"], [""], ["nodes"]),
        _rule(["*"], [""], ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
    ],
    "system:node": _NODE_RULES,
    "system:node-bootstrapper": [
        _rule(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
    ],
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": [
        _rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"]),
    ],
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": [
        _rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"]),
    ],
    "system:certificates.k8s.io:kube-apiserver-client-approver": [
        _rule(["approve"], ["certificates.k8s.io"], ["signers"], ["kubernetes.io/kube-apiserver-client"]),
    ],
    "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver": [
        _rule(["approve"], ["certificates.k8s.io"], ["signers"], ["kubernetes.io/kube-apiserver-client-kubelet"]),
    ],
    "system:certificates.k8s.io:kubelet-serving-approver": [
        _rule(["approve"], ["certificates.k8s.io"], ["signers"], ["kubernetes.io/kubelet-serving"]),
    ],
    "system:node-proxier": [
        _rule(["list", "watch"], [""], ["endpoints", "services"]),
        _rule(_READ, [""], ["nodes"]),
        _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        _rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
    ],
}

# binding name -> (cluster role, subjects as (kind, name))
_CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "cluster-admin": ("cluster-admin", [("Group", MASTERS_GROUP)]),
    "system:basic-user": ("system:basic-user", [("Group", "system:authenticated")]),
    "system:discovery": ("system:discovery", [("Group", "system:authenticated")]),
    "system:public-info-viewer": ("system:public-info-viewer", [
        ("Group", "system:authenticated"), ("Group", "system:unauthenticated")]),
    "system:monitoring": ("system:monitoring", [("Group", "system:monitoring")]),
    "system:node-proxier": ("system:node-proxier", [("User", "system:kube-proxy")]),
    # Upstream leaves this binding without subjects: kubelets are served by the
    # Node authorizer (nodeauthz), which applies the system:node rules itself.
    "system:node": ("system:node", []),
}


def node_rules() -> list[dict]:
    """The static rules of the ``system:node`` ClusterRole, as the Node authorizer applies them."""
    return _NODE_RULES


def _meta(name: str) -> dict:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def bootstrap_objects() -> list[tuple[str, dict]]:
    """The default ClusterRoles, then ClusterRoleBindings, as (resource, object) pairs."""
    out: list[tuple[str, dict]] = []
    for name, rules in _CLUSTER_ROLES.items():
        out.append(("clusterroles", {
            "apiVersion": f"{_RBAC_GROUP}/v1", "kind": "ClusterRole",
            "metadata": _meta(name),
            "rules": copy.deepcopy(rules),
        }))
    for name, (role, subjects) in _CLUSTER_ROLE_BINDINGS.items():
        out.append(("clusterrolebindings", {
            "apiVersion": f"{_RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": _meta(name),
            "roleRef": {"apiGroup": _RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": _RBAC_GROUP, "kind": kind, "name": subject}
                         for kind, subject in subjects],
        }))
    return out
