"""``metrics.k8s.io/v1beta1``: NodeMetrics and PodMetrics from on-demand kubelet scrapes, as metrics-server 0.7.

Owns the group's discovery documents, its URL routing (list/get, namespaced pods,
label and field selectors), the per-node sample cache (the last two scrapes; a
scrape when the newest is older than ``max_age``) and the API objects. Parsing and
rate rules live in :mod:`.metricsscrape`; HTTP and authorization in :mod:`.server`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from urllib.parse import unquote

from . import errors, metricsscrape
from .metricsscrape import Scrape, Usage, rate
from .resources import lookup

log = logging.getLogger(__name__)

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"
_KINDS = {"nodes": ("NodeMetrics", False), "pods": ("PodMetrics", True)}


# -- discovery ------------------------------------------------------------------

def group_entry() -> dict:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [gv], "preferredVersion": gv}


def api_group() -> dict:
    return {"kind": "APIGroup", "apiVersion": "v1", **group_entry()}


def resource_list() -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [{"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
                           "verbs": ["get", "list"]} for plural, (kind, namespaced) in _KINDS.items()]}


def aggregated_item() -> dict:
    resources = [{"resource": plural, "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
                  "scope": "Namespaced" if namespaced else "Cluster", "verbs": ["get", "list"]}
                 for plural, (kind, namespaced) in _KINDS.items()]
    return {"metadata": {"name": GROUP, "creationTimestamp": None},
            "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}]}


def parse_path(path: str) -> tuple[str, str | None, str | None] | None:
    """(plural, namespace, name) of a metrics resource URL; None for anything else (discovery included)."""
    if not path.startswith(PREFIX + "/"):
        return None
    rest = [unquote(p) for p in path[len(PREFIX) + 1:].split("/")]
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2 or not all(rest) or rest[0] not in _KINDS:
        return None
    if ns is not None and not _KINDS[rest[0]][1]:
        return None
    return rest[0], ns, rest[1] if len(rest) > 1 else None


def _rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(u: Usage) -> dict:
    return {"cpu": f"{u.nanocores}n", "memory": f"{u.memory // 1024}Ki"}


def _previous_points(older: Scrape, last: Scrape, new: Scrape) -> Scrape:
    """What ``new`` pairs with, container by container, as metrics-server's storage keeps it: a
    container whose point moved since ``last`` pairs with that point; one whose point did not move (the
    kubelet's pod readings are refreshed less often than its node reading) keeps pairing with the point
    before, so a scrape in between does not make the pod vanish from metrics.k8s.io."""
    previous = Scrape(node=last.node)
    for key, point in new.containers.items():
        seen = last.containers.get(key)
        if seen is not None and point.time > seen.time:
            previous.containers[key] = seen
        elif seen is not None and key in older.containers:
            previous.containers[key] = older.containers[key]
    return previous


def _ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


class MetricsApi:
    """The served objects; scrapes happen in the requesting thread, serialized by one lock."""

    def __init__(self, api, kubelet_ctx, *, max_age: float = 1.0, first_gap: float = 1.0,
                 clock=time.monotonic, sleep=time.sleep, fetch=metricsscrape.fetch):
        self.api = api
        self.ctx = kubelet_ctx
        self.max_age = max_age
        self.first_gap = first_gap
        self._clock, self._sleep, self._fetch = clock, sleep, fetch
        self._samples: dict[str, deque[tuple[float, Scrape]]] = {}
        self._lock = threading.Lock()

    # -- sampling ------------------------------------------------------------
    def _scrape(self, node: dict) -> None:
        name = node["metadata"]["name"]
        try:
            scrape = self._fetch(node, self.ctx)
        except (OSError, ValueError, errors.ApiError) as e:
            log.warning("metrics: scraping node %s failed: %s", name, e)
            return
        kept = self._samples.setdefault(name, deque(maxlen=2))
        if kept and kept[-1][1].node is not None and scrape.node is not None \
                and scrape.node.time <= kept[-1][1].node.time:
            kept[-1] = (self._clock(), kept[-1][1])  # the kubelet's reading did not move: still fresh
            return
        if len(kept) == 2:
            kept[1] = (kept[1][0], _previous_points(kept[0][1], kept[1][1], scrape))
        kept.append((self._clock(), scrape))  # (the older of the two drops out)

    def _refresh(self, nodes: list[dict]) -> None:
        """Bring every node to two samples, the newest younger than ``max_age`` (two ~1 s apart at first)."""
        names = {n["metadata"]["name"] for n in nodes}
        for gone in set(self._samples) - names:
            del self._samples[gone]
        for node in nodes:
            kept = self._samples.get(node["metadata"]["name"])
            if not kept or self._clock() - kept[-1][0] > self.max_age:
                self._scrape(node)
        for _ in range(3):
            short = [n for n in nodes if n["metadata"]["name"] in self._samples
                     and len(self._samples[n["metadata"]["name"]]) < 2]
            if not short:
                return
            self._sleep(self.first_gap)
            for node in short:
                self._scrape(node)

    def _pairs(self) -> dict[str, tuple[Scrape, Scrape]]:
        nodes = [e.obj for e in self.api.store.list("nodes", None)[1] if _ready(e.obj)]
        with self._lock:
            self._refresh(nodes)
            return {name: (kept[0][1], kept[1][1]) for name, kept in self._samples.items() if len(kept) == 2}

    # -- objects -------------------------------------------------------------
    def _node_metrics(self, name: str, pair: tuple[Scrape, Scrape]) -> dict | None:
        u = rate(pair[0].node, pair[1].node)
        if u is None:
            return None
        return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
                "metadata": {"name": name, "creationTimestamp": _rfc3339(time.time())},
                "timestamp": _rfc3339(u.time), "window": f"{u.window:.3f}s", "usage": _usage(u)}

    @staticmethod
    def _pod_metrics(pod: dict, pair: tuple[Scrape, Scrape]) -> dict | None:
        meta = pod["metadata"]
        containers, newest, window = [], 0.0, None
        for c in (pod.get("spec") or {}).get("containers") or []:
            key = (meta.get("namespace", ""), meta["name"], c.get("name"))
            u = rate(pair[0].containers.get(key), pair[1].containers.get(key))
            if u is None:
                return None  # metrics-server: a pod appears only when all its containers have samples
            containers.append({"name": c.get("name"), "usage": _usage(u)})
            newest, window = max(newest, u.time), u.window if window is None else min(window, u.window)
        if not containers:
            return None
        return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace", ""),
                             "labels": meta.get("labels") or {}, "creationTimestamp": _rfc3339(time.time())},
                "timestamp": _rfc3339(newest), "window": f"{window:.3f}s", "containers": containers}

    def serve(self, plural: str, ns: str | None, name: str | None, query: dict) -> dict:
        """The list or the single object; 404 like metrics-server for an object with no metrics."""
        core = lookup("", "v1", plural)
        q = dict(query)
        if name is not None:
            q = {"fieldSelector": f"metadata.name={name}"}
        _, entries = self.api.list(core, ns, q)
        pairs = self._pairs()
        items = []
        for e in entries:
            obj = e.obj
            if plural == "nodes":
                pair = pairs.get(obj["metadata"]["name"])
                m = self._node_metrics(obj["metadata"]["name"], pair) if pair else None
            else:
                pair = pairs.get((obj.get("spec") or {}).get("nodeName") or "")
                m = self._pod_metrics(obj, pair) if pair else None
            if m is not None:
                items.append(m)
        if name is not None:
            if not items:
                raise errors.ApiError(404, "NotFound", f'{plural}.{GROUP} "{name}" not found')
            return items[0]
        kind = _KINDS[plural][0]
        return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}
