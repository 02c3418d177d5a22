"""Node choice for kubelite's scheduler: the filters of kube-scheduler that matter here.

Owns `pick_node` — a pure function from (pod, nodes, pod counts) to a node
name or the kube-scheduler style "0/N nodes are available: ..." message.
Filters run per node in kube-scheduler's plugin order (NodeUnschedulable,
TaintToleration, NodeAffinity, NodeResourcesFit for the pod count), and each
node is charged to the first filter it fails.  A node whose Ready condition is
not True is treated as carrying the taint the node lifecycle controller would
put on it (not-ready / unreachable, NoSchedule).  Knows nothing of the API.
"""

from __future__ import annotations

import re
from collections import Counter

from . import quantity

__all__ = [
    "pick_node",
    "tolerates",
    "untolerated_taint",
    "node_matches_affinity",
    "node_ready_status",
    "NO_NODES_MESSAGE",
]

NO_NODES_MESSAGE = "no nodes available to schedule pods"

TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"

# Preemption's verdict per failure: only resource shortages could be helped
# by evicting lower-priority pods; kubelite never preempts.
_PREEMPTION_UNHELPFUL = "Preemption is not helpful for scheduling"
_PREEMPTION_NO_VICTIMS = "No preemption victims found for incoming pod"

_INT_RE = re.compile(r"^[+-]?[0-9]+$")


# --------------------------------------------------------------------------
# taints and tolerations
# --------------------------------------------------------------------------

def tolerates(toleration: dict, taint: dict) -> bool:
    """True when one toleration tolerates one taint (upstream ToleratesTaint)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def node_ready_status(node: dict) -> str:
    """The status of the node's Ready condition: 'True', 'False' or 'Unknown' (absent)."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") or "Unknown"
    return "Unknown"


def _effective_taints(node: dict) -> list[dict]:
    taints = list((node.get("spec") or {}).get("taints") or [])
    ready = node_ready_status(node)
    implied = None
    if ready == "False":
        implied = TAINT_NOT_READY
    elif ready != "True":
        implied = TAINT_UNREACHABLE
    if implied and not any(t.get("key") == implied and t.get("effect") == "NoSchedule"
                           for t in taints):
        taints.append({"key": implied, "effect": "NoSchedule"})
    return taints


def untolerated_taint(taints: list[dict], tolerations: list[dict]) -> dict | None:
    """The first NoSchedule/NoExecute taint no toleration tolerates, or None."""
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


# --------------------------------------------------------------------------
# node selector and required node affinity
# --------------------------------------------------------------------------

def _expression_matches(expr: dict, values_of: dict) -> bool:
    key = expr.get("key")
    operator = expr.get("operator")
    values = expr.get("values") or []
    present = key in values_of
    value = values_of.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        if not present or len(values) != 1:
            return False
        if not _INT_RE.match(str(value)) or not _INT_RE.match(str(values[0])):
            return False
        have, want = int(value), int(values[0])
        return have > want if operator == "Gt" else have < want
    return False


def _term_matches(term: dict, node: dict) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term selects no node
    labels = (node.get("metadata") or {}).get("labels") or {}
    node_fields = {"metadata.name": (node.get("metadata") or {}).get("name")}
    for expr in fields:
        if expr.get("key") != "metadata.name" or expr.get("operator") not in ("In", "NotIn"):
            return False
    return (all(_expression_matches(e, labels) for e in expressions)
            and all(_expression_matches(e, node_fields) for e in fields))


def node_matches_affinity(pod: dict, node: dict) -> bool:
    """nodeSelector (all pairs) and requiredDuringScheduling node affinity (any term)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


# --------------------------------------------------------------------------
# the filter chain
# --------------------------------------------------------------------------

def _pod_capacity(node: dict) -> int | None:
    raw = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
    if raw is None:
        return None
    try:
        return int(quantity.value(raw))
    except ValueError:
        return 0


HostPort = tuple[str, str, int]  # (protocol, host IP, port)


def host_ports(pod: dict) -> set[HostPort]:
    """The hostPorts a pod asks for (the NodePorts filter's input); hostIP defaults to 0.0.0.0."""
    wanted: set[HostPort] = set()
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                wanted.add((port.get("protocol") or "TCP", port.get("hostIP") or "0.0.0.0", int(port["hostPort"])))
    return wanted


def _ports_clash(wanted: set[HostPort], used: set[HostPort]) -> bool:
    return any(p == q and (a == b or "0.0.0.0" in (a, b)) for p, a, n in wanted for q, b, m in used if n == m)


def _failure(pod: dict, node: dict, pod_counts: dict[str, int],
             used_ports: dict[str, set[HostPort]] | None = None) -> tuple[str, str] | None:
    """(reason, preemption verdict) for the first filter the node fails, else None."""
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable"):
        cordon = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
        if not any(tolerates(t, cordon) for t in tolerations):
            return REASON_UNSCHEDULABLE, _PREEMPTION_UNHELPFUL
    taint = untolerated_taint(_effective_taints(node), tolerations)
    if taint is not None:
        reason = f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"
        return reason, _PREEMPTION_UNHELPFUL
    if not node_matches_affinity(pod, node):
        return REASON_AFFINITY, _PREEMPTION_UNHELPFUL
    capacity = _pod_capacity(node)
    name = (node.get("metadata") or {}).get("name")
    if capacity is not None and pod_counts.get(name, 0) + 1 > capacity:
        return REASON_TOO_MANY_PODS, _PREEMPTION_NO_VICTIMS
    wanted = host_ports(pod)
    if wanted and used_ports and _ports_clash(wanted, used_ports.get(name, set())):
        return REASON_PORTS, _PREEMPTION_NO_VICTIMS
    return None


def _summary(counter: Counter) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counter.items()))


def pick_node(pod: dict, nodes: list[dict], pod_counts: dict[str, int],
              used_ports: dict[str, set[HostPort]] | None = None) -> tuple[str | None, str]:
    """Choose the least loaded feasible node (ties: by name), or explain why none fits.

    `pod_counts` maps node name to the number of non-terminal pods bound to it, `used_ports`
    to the hostPorts those pods hold (kube-scheduler's NodePorts filter).
    Returns (node name, "") or (None, message) with kube-scheduler's wording.
    """
    if not nodes:
        return None, NO_NODES_MESSAGE
    feasible: list[tuple[int, str]] = []
    reasons: Counter = Counter()
    verdicts: Counter = Counter()
    for node in nodes:
        failure = _failure(pod, node, pod_counts, used_ports)
        name = (node.get("metadata") or {}).get("name") or ""
        if failure is None:
            feasible.append((pod_counts.get(name, 0), name))
        else:
            reasons[failure[0]] += 1
            verdicts[failure[1]] += 1
    if feasible:
        return min(feasible)[1], ""
    total = len(nodes)
    message = (f"0/{total} nodes are available: {_summary(reasons)}. "
               f"preemption: 0/{total} nodes are available: {_summary(verdicts)}.")
    return None, message
