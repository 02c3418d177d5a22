"""kubelite.scheduler: kube-scheduler's filters and messages, as a pure function."""

import pytest

from tools.kubelite.scheduler import NO_NODES_MESSAGE, pick_node, tolerates

PROVIDER_TAINT = {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}


def node(name, labels=None, taints=None, ready="True", unschedulable=False, pods=None):
    n = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}, "status": {}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    if ready is not None:
        n["status"]["conditions"] = [{"type": "MemoryPressure", "status": "False"},
                                     {"type": "Ready", "status": ready}]
    if pods is not None:
        n["status"]["allocatable"] = {"pods": str(pods), "cpu": "2"}
    return n


def pod(node_selector=None, tolerations=None, terms=None):
    spec = {"containers": [{"name": "c", "image": "x"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if terms is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


# ---- tolerations ------------------------------------------------------------

TOLERATION_CASES = [
    # (toleration, taint, tolerated)
    ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
     {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "v", "effect": "NoSchedule"},                     # operator defaults to Equal
     {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Equal", "value": "w", "effect": "NoSchedule"},
     {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Equal", "effect": "NoSchedule"},              # empty value vs empty value
     {"key": "k", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Exists", "effect": "NoSchedule"},
     {"key": "k", "value": "anything", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Exists"},                                      # empty effect: all effects
     {"key": "k", "value": "v", "effect": "NoExecute"}, True),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"},
     {"key": "k", "effect": "NoSchedule"}, False),
    ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
    ({"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),  # tolerates all
    ({"operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}, False),
    ({"key": "k", "operator": "Bogus", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
]


@pytest.mark.parametrize("toleration,taint,want", TOLERATION_CASES)
def test_tolerates(toleration, taint, want):
    assert tolerates(toleration, taint) is want


# ---- filters ------------------------------------------------------------------

def test_no_nodes():
    assert pick_node(pod(), [], {}) == (None, NO_NODES_MESSAGE)


def test_plain_fit():
    assert pick_node(pod(), [node("a")], {}) == ("a", "")


def test_least_loaded_then_name():
    nodes = [node("b"), node("a"), node("c")]
    assert pick_node(pod(), nodes, {"a": 3, "b": 1, "c": 1})[0] == "b"
    assert pick_node(pod(), nodes, {})[0] == "a"


def test_untolerated_taint_message():
    name, msg = pick_node(pod(), [node("a", taints=[PROVIDER_TAINT])], {})
    assert name is None
    assert msg == ("0/1 nodes are available: 1 node(s) had untolerated taint "
                   "{virtual-kubelet.io/provider: mock}. preemption: 0/1 nodes are available: "
                   "1 Preemption is not helpful for scheduling.")


def test_toleration_admits_tainted_node():
    tol = [{"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}]
    assert pick_node(pod(tolerations=tol), [node("a", taints=[PROVIDER_TAINT])], {})[0] == "a"


def test_prefer_no_schedule_is_not_a_filter():
    taint = {"key": "k", "effect": "PreferNoSchedule"}
    assert pick_node(pod(), [node("a", taints=[taint])], {})[0] == "a"


def test_no_execute_taint_filters():
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    name, msg = pick_node(pod(), [node("a", taints=[taint])], {})
    assert name is None and "{k: v}" in msg


def test_mixed_reasons_message_is_sorted_and_counted():
    nodes = [
        node("a", labels={"role": "x"}),
        node("b", taints=[PROVIDER_TAINT], labels={"role": "agent"}),
        node("c", unschedulable=True, labels={"role": "agent"}),
        node("d", labels={"role": "y"}),
    ]
    name, msg = pick_node(pod(node_selector={"role": "agent"}), nodes, {})
    assert name is None
    assert msg == ("0/4 nodes are available: 1 node(s) had untolerated taint "
                   "{virtual-kubelet.io/provider: mock}, 1 node(s) were unschedulable, "
                   "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are "
                   "available: 4 Preemption is not helpful for scheduling.")


def test_unschedulable_tolerated_by_toleration():
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert pick_node(pod(tolerations=tol), [node("a", unschedulable=True)], {})[0] == "a"


@pytest.mark.parametrize("ready,taint", [("False", "node.kubernetes.io/not-ready"),
                                         ("Unknown", "node.kubernetes.io/unreachable"),
                                         (None, "node.kubernetes.io/unreachable")])
def test_not_ready_nodes_are_excluded(ready, taint):
    name, msg = pick_node(pod(), [node("a", ready=ready)], {})
    assert name is None
    assert f"1 node(s) had untolerated taint {{{taint}: }}" in msg


def test_default_noexecute_tolerations_do_not_admit_not_ready_node():
    tol = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300}]
    assert pick_node(pod(tolerations=tol), [node("a", ready="False")], {})[0] is None


def test_pods_capacity():
    nodes = [node("a", pods=2), node("b", pods=10)]
    assert pick_node(pod(), nodes, {"a": 0, "b": 5})[0] == "a"
    assert pick_node(pod(), nodes, {"a": 2, "b": 5})[0] == "b"
    name, msg = pick_node(pod(), [node("a", pods=2)], {"a": 2})
    assert name is None
    assert msg == ("0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: "
                   "1 No preemption victims found for incoming pod.")


def test_first_failing_filter_is_charged():
    # tainted and not matching the selector: charged to the taint (filter order)
    n = node("a", taints=[PROVIDER_TAINT])
    _, msg = pick_node(pod(node_selector={"x": "y"}), [n], {})
    assert "untolerated taint" in msg and "affinity" not in msg


# ---- node affinity -------------------------------------------------------------

LABELS = {"jiriaf.nodetype": "cpu", "jiriaf.site": "Local", "jiriaf.alivetime": "120",
          "kubernetes.io/role": "agent"}


def expr(key, op, *values):
    e = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


AFFINITY_CASES = [
    ([{"matchExpressions": [expr("jiriaf.nodetype", "In", "cpu", "gpu")]}], True),
    ([{"matchExpressions": [expr("jiriaf.nodetype", "In", "gpu")]}], False),
    ([{"matchExpressions": [expr("jiriaf.nodetype", "NotIn", "gpu")]}], True),
    ([{"matchExpressions": [expr("jiriaf.nodetype", "NotIn", "cpu")]}], False),
    ([{"matchExpressions": [expr("missing", "NotIn", "x")]}], True),
    ([{"matchExpressions": [expr("jiriaf.site", "Exists")]}], True),
    ([{"matchExpressions": [expr("missing", "Exists")]}], False),
    ([{"matchExpressions": [expr("missing", "DoesNotExist")]}], True),
    ([{"matchExpressions": [expr("jiriaf.site", "DoesNotExist")]}], False),
    ([{"matchExpressions": [expr("jiriaf.alivetime", "Gt", "10")]}], True),
    ([{"matchExpressions": [expr("jiriaf.alivetime", "Gt", "120")]}], False),
    ([{"matchExpressions": [expr("jiriaf.alivetime", "Lt", "121")]}], True),
    ([{"matchExpressions": [expr("jiriaf.alivetime", "Lt", "120")]}], False),
    ([{"matchExpressions": [expr("jiriaf.alivetime", "Gt", "abc")]}], False),    # bad integer
    ([{"matchExpressions": [expr("jiriaf.site", "Gt", "1")]}], False),           # label not integer
    ([{"matchExpressions": [expr("missing", "Gt", "1")]}], False),
    ([{"matchExpressions": [expr("jiriaf.alivetime", "Gt", "1", "2")]}], False),  # one value only
    # AND within a term
    ([{"matchExpressions": [expr("jiriaf.nodetype", "In", "cpu"), expr("jiriaf.site", "In", "Remote")]}], False),
    # OR across terms
    ([{"matchExpressions": [expr("jiriaf.site", "In", "Remote")]},
      {"matchExpressions": [expr("jiriaf.site", "In", "Local")]}], True),
    # matchFields on metadata.name
    ([{"matchFields": [expr("metadata.name", "In", "n1")]}], True),
    ([{"matchFields": [expr("metadata.name", "NotIn", "n1")]}], False),
    ([{"matchFields": [expr("metadata.name", "In", "n1")],
       "matchExpressions": [expr("jiriaf.site", "In", "Local")]}], True),
    ([{"matchFields": [expr("metadata.labels", "In", "n1")]}], False),          # only metadata.name
    ([{}], False),                                                               # empty term
    ([], False),
    ([{"matchExpressions": [expr("jiriaf.site", "Unknown", "x")]}], False),
]


@pytest.mark.parametrize("terms,want", AFFINITY_CASES)
def test_required_node_affinity(terms, want):
    name, msg = pick_node(pod(terms=terms), [node("n1", labels=LABELS)], {})
    assert (name == "n1") is want
    if not want:
        assert "1 node(s) didn't match Pod's node affinity/selector" in msg


def test_node_selector_and_affinity_both_required():
    p = pod(node_selector={"kubernetes.io/role": "agent"},
            terms=[{"matchExpressions": [expr("jiriaf.site", "In", "Local")]}])
    assert pick_node(p, [node("n1", labels=LABELS)], {})[0] == "n1"
    p = pod(node_selector={"kubernetes.io/role": "master"},
            terms=[{"matchExpressions": [expr("jiriaf.site", "In", "Local")]}])
    assert pick_node(p, [node("n1", labels=LABELS)], {})[0] is None


def test_example_affinity_pod():
    """The placement example of shared/examples/affinity-pod.yaml against vkcmd-like nodes."""
    tol = [{"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"}]
    terms = [{"matchExpressions": [expr("jiriaf.nodetype", "In", "cpu"), expr("jiriaf.site", "In", "Local"),
                                   expr("jiriaf.alivetime", "Gt", "10")]}]
    p = pod(node_selector={"kubernetes.io/role": "agent"}, tolerations=tol, terms=terms)
    good = node("vk-1", labels=LABELS, taints=[PROVIDER_TAINT], pods=1000)
    no_walltime = node("vk-2", labels={k: v for k, v in LABELS.items() if k != "jiriaf.alivetime"},
                       taints=[PROVIDER_TAINT])
    control = node("cp", labels={"node-role.kubernetes.io/control-plane": ""},
                   taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    assert pick_node(p, [control, no_walltime, good], {})[0] == "vk-1"
    name, msg = pick_node(p, [control, no_walltime], {})
    assert name is None
    assert msg.startswith("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                          "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.")


def with_ports(p, *ports):
    p["spec"]["containers"][0]["ports"] = [dict(containerPort=port["hostPort"], **port) for port in ports]
    return p


def test_host_ports_are_one_per_node():
    """kube-scheduler's NodePorts filter: a hostPort held on a node keeps another pod asking for it off."""
    nodes = [node("a"), node("b")]
    wants = with_ports(pod(), {"hostPort": 8089})
    assert pick_node(wants, nodes, {"a": 0, "b": 3}, {"a": {("TCP", "0.0.0.0", 8089)}})[0] == "b"
    # another protocol, or another specific host IP, does not clash
    assert pick_node(wants, nodes, {"a": 0, "b": 3}, {"a": {("UDP", "0.0.0.0", 8089)}})[0] == "a"
    pinned = with_ports(pod(), {"hostPort": 8089, "hostIP": "10.0.0.1"})
    assert pick_node(pinned, nodes, {"a": 0, "b": 3}, {"a": {("TCP", "10.0.0.2", 8089)}})[0] == "a"
    name, msg = pick_node(wants, [node("a")], {"a": 1}, {"a": {("TCP", "10.0.0.2", 8089)}})
    assert name is None
    assert msg == ("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. "
                   "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    assert pick_node(pod(), [node("a")], {"a": 1}, {"a": {("TCP", "0.0.0.0", 8089)}})[0] == "a"  # asks none
