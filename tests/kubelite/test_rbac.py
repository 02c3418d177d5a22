"""kubelite.rbac: RBAC decisions, reasons, default policy."""

import pytest

from tools.kubelite.rbac import Authorizer, authorize, bootstrap_objects, forbidden_message, rule_allows

G = "rbac.authorization.k8s.io"


class View:
    """A read-only object view as the server hands to policy code."""

    def __init__(self, objects=()):
        self.objects = {}
        self.lists = 0
        for resource, obj in objects:
            self.add(resource, obj)

    def add(self, resource, obj):
        meta = obj.setdefault("metadata", {})
        meta.setdefault("resourceVersion", str(len(self.objects) + 1))
        self.objects[(resource, meta.get("namespace", ""), meta["name"])] = obj

    def get(self, resource, namespace, name):
        return self.objects.get((resource, namespace or "", name))

    def list(self, resource, namespace=None):
        self.lists += 1
        return [o for (r, ns, _), o in self.objects.items()
                if r == resource and (namespace is None or ns == namespace)]


def res(verb, resource, namespace="", name="", group="", subresource=""):
    return {"resourceAttributes": {"verb": verb, "group": group, "version": "v1", "resource": resource,
                                   "subresource": subresource, "namespace": namespace, "name": name}}


def url(verb, path):
    return {"nonResourceAttributes": {"verb": verb, "path": path}}


def role(name, rules, namespace=None):
    meta = {"name": name}
    kind = "ClusterRole"
    if namespace:
        meta["namespace"] = namespace
        kind = "Role"
    return ("roles" if namespace else "clusterroles", {"kind": kind, "metadata": meta, "rules": rules})


def binding(name, role_kind, role_name, subjects, namespace=None):
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return ("rolebindings" if namespace else "clusterrolebindings",
            {"metadata": meta, "roleRef": {"apiGroup": G, "kind": role_kind, "name": role_name},
             "subjects": subjects})


def user(name):
    return {"kind": "User", "apiGroup": G, "name": name}


def group(name):
    return {"kind": "Group", "apiGroup": G, "name": name}


def sa(name, namespace=None):
    s = {"kind": "ServiceAccount", "name": name}
    if namespace:
        s["namespace"] = namespace
    return s


def policy_view():
    return View(list(bootstrap_objects()) + [
        role("pod-reader", [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]),
        role("cm-one", [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"],
                         "verbs": ["get", "update"]}], namespace="team"),
        role("any-status", [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]}]),
        binding("alice-reads", "ClusterRole", "pod-reader", [user("alice")]),
        binding("bob-reads-team", "ClusterRole", "pod-reader", [user("bob")], namespace="team"),
        binding("bob-cm", "Role", "cm-one", [user("bob")], namespace="team"),
        binding("sa-reads", "ClusterRole", "pod-reader", [sa("robot")], namespace="team"),
        binding("sa-status", "ClusterRole", "any-status", [sa("robot", "other")]),
        binding("viewers", "ClusterRole", "view", [group("viewers")], namespace="team"),
        binding("dangling", "Role", "nope", [user("carol")], namespace="team"),
    ])


CASES = [
    # (user, groups, attrs, allowed)
    ("admin", ["system:masters"], res("delete", "nodes", name="n"), True),
    ("alice", [], res("list", "pods", "default"), True),
    ("alice", [], res("list", "pods"), True),                                  # cluster-wide list
    ("alice", [], res("get", "pods", "default", subresource="log"), True),
    ("alice", [], res("get", "pods", "default", subresource="exec"), False),
    ("alice", [], res("delete", "pods", "default"), False),
    ("alice", [], res("get", "pods", "default", group="apps"), False),        # wrong group
    ("bob", [], res("get", "pods", "team", "p"), True),                        # RoleBinding -> ClusterRole
    ("bob", [], res("get", "pods", "default", "p"), False),                    # ... only in its namespace
    ("bob", [], res("list", "pods"), False),                                   # ... not cluster-wide
    ("bob", [], res("get", "configmaps", "team", "one"), True),                # resourceNames
    ("bob", [], res("get", "configmaps", "team", "two"), False),
    ("bob", [], res("list", "configmaps", "team"), False),                     # list has no name
    ("system:serviceaccount:team:robot", [], res("get", "pods", "team"), True),
    ("system:serviceaccount:other:robot", [], res("get", "pods", "team"), False),
    ("system:serviceaccount:other:robot", [], res("patch", "pods", "x", subresource="status",
                                                   group="apps"), True),    # */status
    ("system:serviceaccount:other:robot", [], res("patch", "pods", "x"), False),
    ("dave", ["viewers"], res("list", "deployments", "team", group="apps"), True),
    ("dave", ["viewers"], res("create", "deployments", "team", group="apps"), False),
    ("dave", ["viewers"], res("get", "secrets", "team"), False),
    ("carol", [], res("get", "pods", "team"), False),
    ("anyone", ["system:authenticated"], url("get", "/api/v1"), True),         # system:discovery "/api/*"
    ("anyone", ["system:authenticated"], url("get", "/apis"), True),
    ("anyone", ["system:authenticated"], url("get", "/metrics"), False),
    ("anyone", ["system:authenticated"], url("post", "/api"), False),
    ("system:anonymous", ["system:unauthenticated"], url("get", "/version"), True),
    ("system:anonymous", ["system:unauthenticated"], url("get", "/api"), False),
    ("anyone", ["system:authenticated"], res("create", "selfsubjectaccessreviews",
                                             group="authorization.k8s.io"), True),
    # RBAC alone gives a node nothing: the system:node binding has no subjects (the Node authorizer serves it)
    ("system:node:vk", ["system:nodes", "system:authenticated"], res("patch", "nodes", name="vk",
                                                                     subresource="status"), False),
    ("system:node:vk", ["system:nodes"], res("watch", "configmaps", "default"), False),
    ("nobody", [], res("get", "pods", "default"), False),
]


@pytest.mark.parametrize("who,groups,attrs,want", CASES)
def test_authorize(who, groups, attrs, want):
    allowed, _ = authorize(who, groups, attrs, VIEW)
    assert allowed is want


VIEW = policy_view()


def test_reasons_are_worded_like_upstream():
    assert authorize("alice", [], res("get", "pods", "x"), VIEW)[1] == (
        'RBAC: allowed by ClusterRoleBinding "alice-reads" of ClusterRole "pod-reader" to User "alice"')
    assert authorize("bob", [], res("get", "configmaps", "team", "one"), VIEW)[1] == (
        'RBAC: allowed by RoleBinding "bob-cm/team" of Role "cm-one" to User "bob"')
    assert authorize("system:serviceaccount:team:robot", [], res("get", "pods", "team"), VIEW)[1] == (
        'RBAC: allowed by RoleBinding "sa-reads/team" of ClusterRole "pod-reader" to ServiceAccount "robot/team"')
    assert authorize("x", ["system:authenticated"], url("get", "/healthz"), VIEW)[1] == (
        'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" '
        'to Group "system:authenticated"')
    assert authorize("nobody", [], res("get", "pods", "default"), VIEW) == (False, "")
    allowed, reason = authorize("carol", [], res("get", "pods", "team"), VIEW)
    assert not allowed and 'role.rbac.authorization.k8s.io "nope" not found' in reason


def test_kubelet_api_admin_rules():
    view = View(list(bootstrap_objects()) + [
        binding("apiserver-kubelet", "ClusterRole", "system:kubelet-api-admin", [user("kube-apiserver")])])
    for sub in ("proxy", "stats", "log", "metrics"):
        assert authorize("kube-apiserver", [], res("get", "nodes", name="n", subresource=sub), view)[0]
    assert authorize("kube-apiserver", [], res("proxy", "nodes", name="n"), view)[0]
    assert authorize("kube-apiserver", [], res("list", "nodes"), view)[0]
    assert not authorize("kube-apiserver", [], res("delete", "nodes", name="n"), view)[0]
    assert not authorize("someone", [], res("get", "nodes", name="n", subresource="proxy"), view)[0]


def test_index_follows_changes():
    view = View([role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])])
    authz = Authorizer()
    assert not authz.authorize("eve", [], res("get", "pods", "a"), view)[0]
    view.add(*binding("b", "ClusterRole", "r", [user("eve")]))
    assert authz.authorize("eve", [], res("get", "pods", "a"), view)[0]
    del view.objects[("clusterrolebindings", "", "b")]
    assert not authz.authorize("eve", [], res("get", "pods", "a"), view)[0]


def test_view_revision_is_used_when_offered():
    class RevisionView(View):
        revision_value = 1

        def revision(self, resource):
            return self.revision_value

    view = RevisionView([role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
                         binding("b", "ClusterRole", "r", [user("eve")])])
    authz = Authorizer()
    for _ in range(5):
        assert authz.authorize("eve", [], res("get", "pods", "a"), view)[0]
    assert view.lists == 4  # one build, four resources listed
    view.revision_value = 2
    authz.authorize("eve", [], res("get", "pods", "a"), view)
    assert view.lists == 8


def test_masters_short_circuit_without_reading_view():
    class Exploding:
        def list(self, *a):
            raise AssertionError("view read")
    assert authorize("root", ["system:masters"], res("delete", "namespaces", name="x"), Exploding()) == (True, "")


RULE_CASES = [
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, res("escalate", "roles", group=G), True),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, res("get", "pods", subresource="log"), False),
    ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}, res("get", "pods", subresource="log"), False),
    ({"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}, res("get", "pods", subresource="log"), True),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": []}, res("get", "pods"), False),
    ({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]}, url("get", "/healthz/etcd"), True),
    ({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]}, url("get", "/healthz"), False),
    ({"nonResourceURLs": ["*"], "verbs": ["*"]}, url("put", "/anything"), True),
    ({"nonResourceURLs": ["/api"], "verbs": ["get"]}, res("get", "pods"), False),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, url("get", "/api"), False),
]


@pytest.mark.parametrize("rule,attrs,want", RULE_CASES)
def test_rule_allows(rule, attrs, want):
    assert rule_allows(rule, attrs) is want


def test_forbidden_message():
    assert forbidden_message("bob", res("list", "pods", "default")) == (
        'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default"')
    assert forbidden_message("bob", res("get", "deployments", name="d", group="apps")) == (
        'deployments.apps "d" is forbidden: User "bob" cannot get resource "deployments" in API group '
        '"apps" at the cluster scope')
    assert forbidden_message("bob", res("get", "nodes", name="n", subresource="proxy")).endswith(
        'cannot get resource "nodes/proxy" in API group "" at the cluster scope')
    assert forbidden_message("bob", url("get", "/metrics"), "no") == (
        'forbidden: User "bob" cannot get path "/metrics": no')


def test_bootstrap_objects_shape():
    objs = bootstrap_objects()
    roles = {o["metadata"]["name"]: o for r, o in objs if r == "clusterroles"}
    bindings = {o["metadata"]["name"]: o for r, o in objs if r == "clusterrolebindings"}
    for name in ("cluster-admin", "system:kubelet-api-admin", "system:node", "system:discovery",
                 "system:basic-user", "system:public-info-viewer", "view", "edit", "admin"):
        assert name in roles
        assert roles[name]["kind"] == "ClusterRole"
    assert bindings["cluster-admin"]["subjects"][0]["name"] == "system:masters"
    assert {s["name"] for s in bindings["system:public-info-viewer"]["subjects"]} == {
        "system:authenticated", "system:unauthenticated"}
    for b in bindings.values():
        assert b["roleRef"]["name"] in roles
    objs[0][1]["rules"].append("mutated")
    assert "mutated" not in bootstrap_objects()[0][1]["rules"]
