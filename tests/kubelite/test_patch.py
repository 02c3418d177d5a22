"""kubelite.patch: RFC 7386, RFC 6902 (the jsonpatch library) and Kubernetes strategic merge patch; JSON patch over the API."""

import copy

import pytest

from tools.kubelite.patch import PatchError, json_patch, merge_patch, strategic_merge_patch

# --------------------------------------------------------------------------
# RFC 7386 (test vectors of its appendix A, wrapped in an object where needed)
# --------------------------------------------------------------------------

MERGE_VECTORS = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("doc,patch,want", MERGE_VECTORS)
def test_merge_patch_rfc7386_vectors(doc, patch, want):
    before = copy.deepcopy(doc)
    assert merge_patch(doc, patch) == want
    assert doc == before


def test_merge_patch_result_does_not_alias_input():
    doc = {"a": {"b": [1, 2]}, "c": {"d": 1}}
    out = merge_patch(doc, {"c": {"e": 2}})
    out["a"]["b"].append(3)
    assert doc["a"]["b"] == [1, 2]


# --------------------------------------------------------------------------
# RFC 6902
# --------------------------------------------------------------------------

JSON_PATCH_OK = [
    # add
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"foo": "bar", "baz": "qux"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"foo": [1]}, [{"op": "add", "path": "/foo/-", "value": 2}], {"foo": [1, 2]}),
    ({"foo": [1]}, [{"op": "add", "path": "/foo/1", "value": 2}], {"foo": [1, 2]}),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": "bar"}, [{"op": "add", "path": "/foo", "value": None}], {"foo": None}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # remove
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    # replace
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"a": [1, 2]}, [{"op": "replace", "path": "/a/0", "value": 9}], {"a": [9, 2]}),
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    # move
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
    # copy
    ({"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
    ({"a": [1, 2]}, [{"op": "copy", "from": "/a/0", "path": "/a/-"}], {"a": [1, 2, 1]}),
    # test
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}], {"a": 1}),
    ({"a": {"x": [1, {"y": None}]}}, [{"op": "test", "path": "/a", "value": {"x": [1, {"y": None}]}}],
     {"a": {"x": [1, {"y": None}]}}),
    # JSON pointer escaping (RFC 6901)
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}},
     [{"op": "replace", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "y"}],
     {"metadata": {"labels": {"app.kubernetes.io/name": "y"}}}),
    ({"a~b": 1}, [{"op": "remove", "path": "/a~0b"}], {}),
    ({"": 1}, [{"op": "replace", "path": "/", "value": 2}], {"": 2}),
    # sequence: later ops see earlier results
    ({}, [{"op": "add", "path": "/a", "value": []}, {"op": "add", "path": "/a/-", "value": 1},
          {"op": "test", "path": "/a/0", "value": 1}], {"a": [1]}),
]


@pytest.mark.parametrize("doc,ops,want", JSON_PATCH_OK)
def test_json_patch_vectors(doc, ops, want):
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == want
    assert doc == before


JSON_PATCH_ERRORS = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}]),      # missing parent
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}]),         # failed test
    ({"a": 1}, [{"op": "test", "path": "/a", "value": True}]),                  # bool is not 1
    ({"a": True}, [{"op": "test", "path": "/a", "value": 1}]),
    ({"a": "1"}, [{"op": "test", "path": "/a", "value": 1}]),
    ({"a": 1}, [{"op": "test", "path": "/b", "value": None}]),                  # missing path
    ({"foo": [1]}, [{"op": "add", "path": "/foo/2", "value": 3}]),              # index past end
    ({"foo": [1]}, [{"op": "add", "path": "/foo/01", "value": 3}]),             # leading zero
    ({"foo": [1]}, [{"op": "remove", "path": "/foo/-"}]),                       # '-' only for add
    ({"foo": [1]}, [{"op": "replace", "path": "/foo/1", "value": 3}]),
    ({"a": 1}, [{"op": "remove", "path": "/b"}]),
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}]),
    ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}]),        # into own child
    ({"a": 1}, [{"op": "move", "from": "/x", "path": "/y"}]),
    ({"a": 1}, [{"op": "copy", "from": "/x", "path": "/y"}]),
    ({"a": 1}, [{"op": "frobnicate", "path": "/a"}]),
    ({"a": 1}, [{"op": "add", "path": "/b"}]),                                  # no value
    ({"a": 1}, [{"op": "add", "value": 1}]),                                    # no path
    ({"a": 1}, [{"op": "add", "path": "b", "value": 1}]),                       # not a pointer
    ({"a": 1}, [{"op": "add", "path": "", "value": [1]}]),                      # result not object
    ({"a": 1}, ["add"]),
    ({"a": 1}, [{"op": "remove", "path": ""}]),
    ({"a": "s"}, [{"op": "add", "path": "/a/b", "value": 1}]),                  # parent is scalar
]


@pytest.mark.parametrize("doc,ops", JSON_PATCH_ERRORS)
def test_json_patch_errors(doc, ops):
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError):
        json_patch(doc, ops)
    assert doc == before


def test_json_patch_not_a_list():
    with pytest.raises(PatchError):
        json_patch({}, {"op": "add"})


def test_json_patch_failure_is_atomic():
    doc = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 5}])
    assert doc == {"a": 1}


# --------------------------------------------------------------------------
# strategic merge patch
# --------------------------------------------------------------------------

def pod(**spec):
    base = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"a": "1"},
                     "finalizers": ["x"], "ownerReferences": [{"uid": "u1", "name": "rs"}]},
        "spec": {
            "containers": [
                {"name": "c1", "image": "i1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                 "volumeMounts": [{"name": "v1", "mountPath": "/a"}]},
                {"name": "c2", "image": "i2"},
            ],
            "volumes": [{"name": "v1", "emptyDir": {}}, {"name": "v2", "configMap": {"name": "cm"}}],
            "tolerations": [{"key": "k1", "operator": "Exists"}],
            "imagePullSecrets": [{"name": "s1"}],
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "c1", "ready": False}, {"name": "c2", "ready": False}],
        },
    }
    base["spec"].update(spec)
    return base


def smp(obj, patch, kind="Pod"):
    before = copy.deepcopy(obj)
    out = strategic_merge_patch(obj, patch, kind)
    assert obj == before, "input mutated"
    return out


def test_containers_merge_by_name():
    out = smp(pod(), {"spec": {"containers": [{"name": "c2", "image": "new"}]}})
    names = [(c["name"], c["image"]) for c in out["spec"]["containers"]]
    assert names == [("c1", "i1"), ("c2", "new")]


def test_new_container_is_appended():
    out = smp(pod(), {"spec": {"containers": [{"name": "c3", "image": "i3"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c1", "c2", "c3"]


def test_env_merges_by_name_within_container():
    out = smp(pod(), {"spec": {"containers": [{"name": "c1", "env": [{"name": "B", "value": "9"},
                                                                     {"name": "C", "value": "3"}]}]}})
    env = out["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}, {"name": "B", "value": "9"}, {"name": "C", "value": "3"}]


def test_ports_merge_by_container_port():
    out = smp(pod(), {"spec": {"containers": [{"name": "c1", "ports": [{"containerPort": 80, "name": "http"},
                                                                       {"containerPort": 443}]}]}})
    assert out["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]


def test_volume_mounts_merge_by_mount_path():
    out = smp(pod(), {"spec": {"containers": [{"name": "c1", "volumeMounts": [
        {"mountPath": "/a", "readOnly": True}, {"name": "v2", "mountPath": "/b"}]}]}})
    assert out["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "v1", "mountPath": "/a", "readOnly": True}, {"name": "v2", "mountPath": "/b"}]


def test_volumes_merge_by_name():
    out = smp(pod(), {"spec": {"volumes": [{"name": "v3", "secret": {"secretName": "s"}}]}})
    assert [v["name"] for v in out["spec"]["volumes"]] == ["v1", "v2", "v3"]


def test_tolerations_are_replaced():
    out = smp(pod(), {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}})
    assert out["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]


def test_image_pull_secrets_merge_by_name():
    out = smp(pod(), {"spec": {"imagePullSecrets": [{"name": "s2"}]}})
    assert out["spec"]["imagePullSecrets"] == [{"name": "s1"}, {"name": "s2"}]


def test_status_conditions_merge_by_type():
    out = smp(pod(), {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                                {"type": "PodScheduled", "reason": "x"}]}})
    assert out["status"]["conditions"] == [
        {"type": "PodScheduled", "status": "True", "reason": "x"}, {"type": "Ready", "status": "True"}]


def test_container_statuses_are_replaced_as_upstream():
    out = smp(pod(), {"status": {"containerStatuses": [{"name": "c1", "ready": True}]}})
    assert out["status"]["containerStatuses"] == [{"name": "c1", "ready": True}]


def test_finalizers_are_a_set():
    out = smp(pod(), {"metadata": {"finalizers": ["y", "x"]}})
    assert out["metadata"]["finalizers"] == ["x", "y"]


def test_delete_from_primitive_list():
    out = smp(pod(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out["metadata"]["finalizers"] == []


def test_owner_references_merge_by_uid():
    out = smp(pod(), {"metadata": {"ownerReferences": [{"uid": "u2", "name": "other"},
                                                       {"uid": "u1", "controller": True}]}})
    assert out["metadata"]["ownerReferences"] == [
        {"uid": "u1", "name": "rs", "controller": True}, {"uid": "u2", "name": "other"}]


def test_patch_delete_list_element():
    out = smp(pod(), {"spec": {"containers": [{"name": "c1", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2"]


def test_patch_replace_list():
    out = smp(pod(), {"spec": {"volumes": [{"$patch": "replace"}, {"name": "only", "emptyDir": {}}]}})
    assert out["spec"]["volumes"] == [{"name": "only", "emptyDir": {}}]


def test_patch_replace_map():
    out = smp(pod(), {"metadata": {"labels": {"$patch": "replace", "b": "2"}}})
    assert out["metadata"]["labels"] == {"b": "2"}


def test_patch_delete_map():
    out = smp(pod(), {"status": {"$patch": "delete"}})
    assert "status" not in out


def test_patch_merge_directive_is_plain_merge():
    out = smp(pod(), {"metadata": {"labels": {"$patch": "merge", "b": "2"}}})
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}


def test_null_deletes_keys():
    out = smp(pod(), {"metadata": {"labels": {"a": None}}, "spec": {"tolerations": None}})
    assert out["metadata"]["labels"] == {}
    assert "tolerations" not in out["spec"]


def test_retain_keys_clears_other_keys():
    obj = {"kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"maxSurge": 1}}}}
    out = smp(obj, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_in_volume():
    out = smp(pod(), {"spec": {"volumes": [{"name": "v1", "$retainKeys": ["name", "hostPath"],
                                            "hostPath": {"path": "/x"}}]}})
    assert out["spec"]["volumes"][0] == {"name": "v1", "hostPath": {"path": "/x"}}


def test_set_element_order_orders_and_is_not_stored():
    out = smp(pod(), {"spec": {"$setElementOrder/containers": [{"name": "c2"}, {"name": "c1"}],
                               "containers": [{"name": "c2", "image": "z"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2", "c1"]
    assert not any(k.startswith("$") for k in out["spec"])


def test_directives_inside_new_elements_are_stripped():
    out = smp(pod(), {"spec": {"containers": [{"name": "c9", "image": "i",
                                               "$setElementOrder/env": [{"name": "X"}],
                                               "env": [{"name": "X", "value": "1"}]}]}})
    added = out["spec"]["containers"][-1]
    assert added == {"name": "c9", "image": "i", "env": [{"name": "X", "value": "1"}]}


def test_node_conditions_addresses_and_taints():
    node = {"kind": "Node", "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "MemoryPressure", "status": "False"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
    out = smp(node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                     "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                                "addresses": [{"type": "Hostname", "address": "h"}]}}, "Node")
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]
    assert out["status"]["conditions"][0] == {"type": "Ready", "status": "Unknown"}
    assert len(out["status"]["conditions"]) == 2
    assert [a["type"] for a in out["status"]["addresses"]] == ["InternalIP", "Hostname"]


def test_deployment_template_containers_merge():
    dep = {"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}}
    out = smp(dep, {"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}},
              "Deployment")
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]


def test_unknown_kind_replaces_lists_but_merges_metadata():
    obj = {"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x"}]}}
    out = smp(obj, {"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}]}}, "Widget")
    assert out == {"metadata": {"finalizers": ["a", "b"]}, "spec": {"items": [{"name": "y"}]}}


@pytest.mark.parametrize("patch", [
    {"spec": {"containers": [{"image": "no-name"}]}},          # missing merge key
    {"spec": {"containers": ["c1"]}},                          # not an object
    {"metadata": {"$patch": "explode"}},                       # unknown directive
    {"spec": {"$frob": 1}},                                    # unknown $ key
    {"metadata": {"$retainKeys": "name"}},                     # bad retainKeys
])
def test_smp_errors(patch):
    with pytest.raises(PatchError):
        smp(pod(), patch)


def test_smp_rejects_non_object_patch():
    with pytest.raises(PatchError):
        strategic_merge_patch(pod(), [1], "Pod")


def test_smp_kubelet_style_status_patch():
    """What a kubelet sends: $setElementOrder + conditions + whole containerStatuses."""
    patch = {"status": {
        "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Initialized"}, {"type": "Ready"}],
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "c1", "ready": True}, {"name": "c2", "ready": True}],
        "phase": "Running"}}
    out = smp(pod(), patch)
    assert [c["type"] for c in out["status"]["conditions"]] == ["PodScheduled", "Initialized", "Ready"]
    assert out["status"]["phase"] == "Running"
    assert all(s["ready"] for s in out["status"]["containerStatuses"])


# --------------------------------------------------------------------------
# JSON patch over the API: kube-apiserver's answers (staging/.../handlers/patch.go)
# --------------------------------------------------------------------------

def _configmap(core, namespace, name):
    return core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"a": "1"}})


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/data/a", "value": "2"}],            # a failed test
    [{"op": "remove", "path": "/data/missing"}],                  # a missing path
    [{"op": "frobnicate", "path": "/data/a"}],                    # an unknown operation
])
def test_a_json_patch_that_does_not_apply_is_422_with_the_generic_message(kube_client, namespace, ops):
    import json

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_client)
    _configmap(core, namespace, "jp")
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map("jp", namespace, ops)  # a list body goes as json-patch+json
    body = json.loads(info.value.body)
    assert info.value.status == 422
    assert (body["reason"], body["message"]) == (
        "Invalid", "the server rejected our request due to an error in our request")
    assert core.read_namespaced_config_map("jp", namespace).data == {"a": "1"}


def test_a_json_patch_applies_and_is_bounded(kube_client, namespace, kubectl):
    import json

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_client)
    _configmap(core, namespace, "jp-ok")
    out = kubectl("-n", namespace, "patch", "configmap", "jp-ok", "--type=json", "-p",
                  json.dumps([{"op": "test", "path": "/data/a", "value": "1"},
                              {"op": "add", "path": "/data/b", "value": "2"}]), check=True)
    assert "patched" in out.stdout
    assert core.read_namespaced_config_map("jp-ok", namespace).data == {"a": "1", "b": "2"}
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map("jp-ok", namespace,
                                         [{"op": "test", "path": "/data/a", "value": "1"}] * 10001)
    assert info.value.status == 413
    assert json.loads(info.value.body)["message"] == (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001")
