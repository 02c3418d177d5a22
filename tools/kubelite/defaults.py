"""The API server's scheme defaults for pod specs, and the pod's QoS class.

One place for what both the write strategy (on every decode) and admission
(on create and update) fill in. Functions mutate the dict they are given.
"""

from __future__ import annotations


def _image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: dict | None) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)


def _default_field_refs(items: list | None) -> None:
    for item in items or []:
        ref = item.get("fieldRef") if isinstance(item, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")


def _default_container(c: dict) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _image_pull_policy(c.get("image") or ""))
    resources = c.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for key, value in limits.items():
            requests.setdefault(key, value)
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))


def _default_volume(v: dict) -> None:
    for kind in ("configMap", "secret", "projected", "downwardAPI"):
        source = v.get(kind)
        if isinstance(source, dict):
            source.setdefault("defaultMode", 420)
    if isinstance(v.get("downwardAPI"), dict):
        _default_field_refs(v["downwardAPI"].get("items"))
    for source in (v.get("projected") or {}).get("sources") or []:
        if isinstance(source.get("downwardAPI"), dict):
            _default_field_refs(source["downwardAPI"].get("items"))
    if isinstance(v.get("hostPath"), dict):
        v["hostPath"].setdefault("type", "")


def apply_pod_defaults(spec: dict) -> dict:
    """Fill in the API server's PodSpec defaults in place (also for templates); returns ``spec``."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _default_container(c)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            _default_volume(v)
    return spec


def qos_class(spec: dict) -> str:
    """Guaranteed / Burstable / BestEffort from the containers' requests and limits."""
    containers = [c for k in ("containers", "initContainers") for c in spec.get(k) or []]
    any_set = False
    guaranteed = True
    for c in containers:
        resources = c.get("resources") or {}
        requests = {k: v for k, v in (resources.get("requests") or {}).items()
                    if k in ("cpu", "memory")}
        limits = {k: v for k, v in (resources.get("limits") or {}).items()
                  if k in ("cpu", "memory")}
        if requests or limits:
            any_set = True
        if set(limits) != {"cpu", "memory"} or any(
                str(requests.get(k, limits[k])) != str(limits[k]) for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
