"""The table of API resources kubelite serves: group, version, kind, scope, verbs.

Pure data: discovery, routing, the store and the Table printer all read this
one table, so adding a resource is one line here (plus any semantics).
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
GET_PATCH_UPDATE = ("get", "patch", "update")


@dataclass(frozen=True)
class Sub:
    """A subresource: its name, response kind (group, version, kind) and verbs."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None  # None: same group/version as the parent
    version: str | None = None


@dataclass(frozen=True)
class Resource:
    """One served resource. ``key`` names its bucket in the store."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Sub, ...] = ()
    status_isolated: bool = False  # main resource ignores status; status subresource ignores the rest
    clear_status_on_create: bool = False
    key: str = ""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def sub(self, name: str) -> Sub | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None

    def path_prefix(self) -> str:
        return "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"


_TABLE = [
    Resource("", "v1", "namespaces", "namespace", "Namespace", False,
             ("create", "delete", "get", "list", "patch", "update", "watch"), ("ns",),
             subresources=(Sub("status", "Namespace", GET_PATCH_UPDATE), Sub("finalize", "Namespace", ("update",))),
             status_isolated=True),
    Resource("", "v1", "nodes", "node", "Node", False, short_names=("no",),
             subresources=(Sub("status", "Node", GET_PATCH_UPDATE), Sub("proxy", "NodeProxyOptions", ("create", "delete", "get", "patch", "update"))),
             status_isolated=True),
    Resource("", "v1", "pods", "pod", "Pod", True, short_names=("po",), categories=("all",),
             subresources=(Sub("status", "Pod", GET_PATCH_UPDATE), Sub("binding", "Binding", ("create",)),
                           Sub("log", "Pod", ("get",)), Sub("exec", "Status", ("create", "get")),
                           Sub("attach", "Status", ("create", "get")),
                           Sub("portforward", "Status", ("create", "get")), Sub("eviction", "Eviction", ("create",), "policy", "v1")),
             status_isolated=True, clear_status_on_create=True),
    Resource("", "v1", "configmaps", "configmap", "ConfigMap", True, short_names=("cm",)),
    Resource("", "v1", "secrets", "secret", "Secret", True),
    Resource("", "v1", "events", "event", "Event", True, short_names=("ev",)),
    Resource("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, short_names=("sa",),
             subresources=(Sub("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),)),
    Resource("apps", "v1", "deployments", "deployment", "Deployment", True, short_names=("deploy",),
             categories=("all",),
             subresources=(Sub("status", "Deployment", GET_PATCH_UPDATE),
                           Sub("scale", "Scale", GET_PATCH_UPDATE, "autoscaling", "v1")),
             status_isolated=True, clear_status_on_create=True),
    Resource("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, short_names=("rs",),
             categories=("all",),
             subresources=(Sub("status", "ReplicaSet", GET_PATCH_UPDATE),
                           Sub("scale", "Scale", GET_PATCH_UPDATE, "autoscaling", "v1")),
             status_isolated=True, clear_status_on_create=True),
    Resource("batch", "v1", "jobs", "job", "Job", True, categories=("all",),
             subresources=(Sub("status", "Job", GET_PATCH_UPDATE),),
             status_isolated=True, clear_status_on_create=True),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    Resource("events.k8s.io", "v1", "events", "event", "Event", True, short_names=("ev",),
             key="events.events.k8s.io"),
    Resource("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", False, ("create",)),
    Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview",
             False, ("create",)),
    Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "subjectaccessreview",
             "SubjectAccessReview", False, ("create",)),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview",
             "SelfSubjectAccessReview", False, ("create",)),
    Resource("authorization.k8s.io", "v1", "localsubjectaccessreviews", "localsubjectaccessreview",
             "LocalSubjectAccessReview", True, ("create",)),
    Resource("certificates.k8s.io", "v1", "certificatesigningrequests", "certificatesigningrequest",
             "CertificateSigningRequest", False, short_names=("csr",),
             subresources=(Sub("status", "CertificateSigningRequest", GET_PATCH_UPDATE),
                           Sub("approval", "CertificateSigningRequest", GET_PATCH_UPDATE)),
             status_isolated=True, clear_status_on_create=True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
             "ClusterRoleBinding", False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", True),
]

#: Resources answered without storage (reviews): created and returned, never kept.
VIRTUAL = frozenset({"tokenreviews", "selfsubjectreviews", "subjectaccessreviews", "selfsubjectaccessreviews",
                     "localsubjectaccessreviews"})


def _keyed(r: Resource) -> Resource:
    if r.key:
        return r
    object.__setattr__(r, "key", r.plural)
    return r


RESOURCES: tuple[Resource, ...] = tuple(_keyed(r) for r in _TABLE)
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KEY = {r.key: r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at ``/api(s)/<group>/<version>/<plural>``, or None."""
    return _BY_PATH.get((group, version, plural))


def by_key(key: str) -> Resource | None:
    """The resource whose store bucket is ``key`` (its plural, events.k8s.io aside)."""
    return _BY_KEY.get(key)


def group_versions() -> dict[str, list[Resource]]:
    """``{"v1": [...], "apps/v1": [...], ...}`` in table order."""
    out: dict[str, list[Resource]] = {}
    for r in RESOURCES:
        out.setdefault(r.group_version, []).append(r)
    return out


def groups() -> list[str]:
    """Named API groups (the core group excluded), in table order."""
    seen: list[str] = []
    for r in RESOURCES:
        if r.group and r.group not in seen:
            seen.append(r.group)
    return seen
