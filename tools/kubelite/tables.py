"""Server-side printing: ``meta.k8s.io/v1`` Table responses, as ``kubectl get`` asks for.

Columns follow the apiserver's printers for the kinds kubelite serves (pods,
nodes, deployments, replicasets, namespaces, configmaps, secrets, events,
leases, service accounts); other kinds get the default Name / Created At.
Pure functions of objects and a clock.
"""

from __future__ import annotations

import calendar
import time

TABLE_PARAM = "as=Table"


def wants_table(accept: str) -> bool:
    for part in accept.split(","):
        params = [p.strip() for p in part.split(";")[1:]]
        if "as=Table" in params and "g=meta.k8s.io" in params:
            return True
    return False


def _parse_ts(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery duration.HumanDuration."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    return f"{h // (24 * 365)}y"


def _age(obj: dict, now: float) -> str:
    t = _parse_ts((obj.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration(now - t)


def _col(name: str, typ: str = "string", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": name, "priority": priority}


def _pod_status(pod: dict) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("initContainerStatuses") or []:
        st = cs.get("state") or {}
        if "terminated" in st and st["terminated"].get("exitCode") == 0:
            continue
        if "waiting" in st and st["waiting"].get("reason") not in (None, "PodInitializing"):
            return "Init:" + st["waiting"]["reason"]
    running = False
    for cs in reversed(status.get("containerStatuses") or []):
        st = cs.get("state") or {}
        if st.get("waiting", {}).get("reason"):
            reason = st["waiting"]["reason"]
        elif "terminated" in st:
            t = st["terminated"]
            reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal")
                                         else f"ExitCode:{t.get('exitCode', 0)}")
        elif "running" in st and cs.get("ready"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod_row(pod: dict, now: float) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    gates = spec.get("readinessGates") or []
    return [pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}", _pod_status(pod), restarts,
            _age(pod, now), status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", f"{len(gates)}/{len(gates)}" if gates else "<none>"]


def _node_row(node: dict, now: float) -> list:
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    state = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready"), "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = meta.get("labels") or {}
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k}
                   | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [meta["name"], state, ",".join(roles) or "<none>", _age(node, now), info.get("kubeletVersion", ""),
            addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


def _containers(spec: dict) -> tuple[str, str]:
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector(spec: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())


def _deployment_row(d: dict, now: float) -> list:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(spec)
    return [d["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(d, now), names, images,
            _selector(spec)]


def _rs_row(rs: dict, now: float) -> list:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(spec)
    return [rs["metadata"]["name"], spec.get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(rs, now), names, images, _selector(spec)]


def _job_row(job: dict, now: float) -> list:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    conds = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    state = next((c for c in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet") if c in conds), "Running")
    done = status.get("succeeded", 0)
    completions = (f"{done}/{spec['completions']}" if spec.get("completions") is not None
                   else f"{done}/1 of {spec.get('parallelism', 1)}")
    start, end = _parse_ts(status.get("startTime")), _parse_ts(status.get("completionTime"))
    duration = human_duration((end or now) - start) if start else ""
    names, images = _containers(spec)
    return [job["metadata"]["name"], state, completions, duration, _age(job, now), names, images, _selector(spec)]


def _event_row(ev: dict, now: float) -> list:
    last = ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp")
    t = _parse_ts(last)
    io = ev.get("involvedObject") or {}
    obj = f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"
    return [human_duration(now - t) if t else "<unknown>", ev.get("type", ""), ev.get("reason", ""), obj,
            ev.get("message", "")]


_PRINTERS = {
    "pods": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", "string"), _col("Age"),
              _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
              _col("Readiness Gates", priority=1)], _pod_row),
    "nodes": ([_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
               _col("Internal-IP", priority=1), _col("External-IP", priority=1), _col("OS-Image", priority=1),
               _col("Kernel-Version", priority=1), _col("Container-Runtime", priority=1)], _node_row),
    "deployments": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", "integer"),
                     _col("Available", "integer"), _col("Age"), _col("Containers", priority=1),
                     _col("Images", priority=1), _col("Selector", priority=1)], _deployment_row),
    "replicasets": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                     _col("Ready", "integer"), _col("Age"), _col("Containers", priority=1),
                     _col("Images", priority=1), _col("Selector", priority=1)], _rs_row),
    "jobs": ([_col("Name", fmt="name"), _col("Status"), _col("Completions"), _col("Duration"), _col("Age"),
              _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)], _job_row),
    "namespaces": ([_col("Name", fmt="name"), _col("Status"), _col("Age")],
                   lambda o, now: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), _age(o, now)]),
    "configmaps": ([_col("Name", fmt="name"), _col("Data", "integer"), _col("Age")],
                   lambda o, now: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                   _age(o, now)]),
    "secrets": ([_col("Name", fmt="name"), _col("Type"), _col("Data", "integer"), _col("Age")],
                lambda o, now: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), _age(o, now)]),
    "serviceaccounts": ([_col("Name", fmt="name"), _col("Secrets", "integer"), _col("Age")],
                        lambda o, now: [o["metadata"]["name"], len(o.get("secrets") or []), _age(o, now)]),
    "leases": ([_col("Name", fmt="name"), _col("Holder"), _col("Age")],
               lambda o, now: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""),
                               _age(o, now)]),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event_row),
}
_DEFAULT = ([_col("Name", fmt="name"), _col("Created At", "date")],
            lambda o, now: [o["metadata"]["name"], (o.get("metadata") or {}).get("creationTimestamp")])


def _row_object(obj: dict, include: str) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(key: str, objs: list[dict], *, resource_version: str = "", include: str = "Metadata",
          with_columns: bool = True, now: float | None = None, continue_token: str = "") -> dict:
    """A Table of ``objs`` of store bucket ``key`` (``include``: None / Metadata / Object)."""
    now = time.time() if now is None else now
    cols, row = _PRINTERS.get(key, _DEFAULT)
    rows = []
    for o in objs:
        r = {"cells": row(o, now)}
        ro = _row_object(o, include)
        if ro is not None:
            r["object"] = ro
        rows.append(r)
    out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": resource_version, **({"continue": continue_token} if continue_token else {})},
           "columnDefinitions": cols if with_columns else [], "rows": rows}
    return out
