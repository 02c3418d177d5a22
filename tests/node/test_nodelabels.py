"""NodeRestriction's label rule as vkcmd applies it, and the API server's refusal as vkcmd reads it."""

import pytest

from vkcmd.kube.nodelabels import node_may_set, refused_labels, split


@pytest.mark.parametrize("key, allowed", [
    ("type", True), ("jiriaf.site", True), ("example.com/team", True),
    ("kubernetes.io/hostname", True), ("kubernetes.io/os", True), ("beta.kubernetes.io/arch", True),
    ("topology.kubernetes.io/zone", True), ("node.kubernetes.io/instance-type", True),
    ("kubelet.kubernetes.io/anything", True), ("node.kubernetes.io/anything", True),
    ("kubernetes.io/role", False), ("node-role.kubernetes.io/agent", False), ("k8s.io/x", False),
    ("foo.k8s.io/x", False), ("node-restriction.kubernetes.io/pool", False),
])
def test_what_a_node_may_set(key, allowed):
    assert node_may_set(key) is allowed


def test_only_a_node_identity_leaves_labels_out():
    labels = {"type": "virtual-kubelet", "kubernetes.io/role": "agent", "kubernetes.io/os": "linux"}
    assert split(labels, False) == (labels, {})
    assert split(labels, True) == ({"type": "virtual-kubelet", "kubernetes.io/os": "linux"},
                                   {"kubernetes.io/role": "agent"})


def test_the_refusal_names_the_labels():
    # kube-apiserver v1.33's words (issue 12)
    message = 'nodes "nid" is forbidden: node "nid" is not allowed to set the following labels: kubernetes.io/role'
    assert refused_labels(message) == ["kubernetes.io/role"]
    assert refused_labels('node "n" is not allowed to modify the following labels: a.k8s.io/x, b.k8s.io/y') == [
        "a.k8s.io/x", "b.k8s.io/y"]
    assert refused_labels("forbidden: something else") == []
