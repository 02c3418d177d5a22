"""Action subresources: pods/binding, pods/eviction, */scale, serviceaccounts/token.

Each function takes the :class:`~.api.Api`, the request's names and decoded
body, and returns ``(http_code, body_dict)``; errors are ApiErrors. No HTTP here.
"""

from __future__ import annotations

from . import errors, policy
from .api import Api
from .resources import Resource, lookup
from .store import now_rfc3339, rfc3339
from .tokens import API_AUDIENCES, TokenSigner

PODS = lookup("", "v1", "pods")


def bind(api: Api, ns: str, name: str, body: dict) -> tuple[int, dict]:
    """Assign a pod to a node: sets spec.nodeName and PodScheduled=True (409 if already bound)."""
    target = (body or {}).get("target") or {}
    node = target.get("name")
    if not node:
        raise errors.invalid("Binding", name, [{"reason": "FieldValueRequired", "message": "Required value",
                                                "field": "target.name"}])

    def assign(pod: dict) -> dict:
        spec = pod.setdefault("spec", {})
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("pods/binding", name, f"pod {name} is being deleted, cannot be assigned to a host")
        if spec.get("nodeName"):
            raise errors.conflict("pods/binding", name,
                                  f'pod {name} is already assigned to node "{spec["nodeName"]}"')
        spec["nodeName"] = node
        status = pod.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": now_rfc3339()})
        status["conditions"] = conds
        return pod

    # binding bypasses spec immutability (admission) and status isolation: it is the scheduler's write
    api.write(PODS, ns, name, "binding", assign, admit=False)
    return 201, errors.success_status(201)


def evict(api: Api, ns: str, name: str, body: dict, user=None) -> tuple[int, dict]:
    """Eviction without disruption budgets: a delete with the eviction's DeleteOptions."""
    api.delete(PODS, ns, name, (body or {}).get("deleteOptions") or {}, user=user, sub="eviction")
    return 201, errors.success_status(201)


def scale_of(res: Resource, obj: dict) -> dict:
    """The autoscaling/v1 Scale view of a deployment or replicaset."""
    meta = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    selector = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector},
    }


def update_scale(api: Api, res: Resource, ns: str, name: str, change, *, user_rv: int | None) -> dict:
    """Apply ``change(scale_dict) -> scale_dict`` to spec.replicas; returns the new Scale."""
    def compute(obj: dict) -> dict:
        scale = change(scale_of(res, obj))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid("Scale", name, [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                                  "message": f"Invalid value: {replicas}: must be greater than "
                                                             "or equal to 0"}], "autoscaling")
        obj.setdefault("spec", {})["replicas"] = replicas
        return obj
    entry = api.write(res, ns, name, "scale", compute, user_rv=user_rv)
    return scale_of(res, entry.obj)


def patch_scale(api: Api, res: Resource, ns: str, name: str, kind_of_patch: str, patch) -> dict:
    if kind_of_patch == "apply":
        kind_of_patch = "merge"
    return update_scale(api, res, ns, name, lambda s: policy.apply_patch(kind_of_patch, s, patch, "Scale"),
                        user_rv=None)


def token_request(api: Api, signer: TokenSigner, ns: str, name: str, body: dict, user=None) -> tuple[int, dict]:
    """TokenRequest: a bound service-account token (optionally bound to a pod, then also to its node)."""
    sa = api.store.get("serviceaccounts", ns, name)
    if sa is None:
        raise errors.not_found("serviceaccounts", name)
    body = body or {}
    spec = dict(body.get("spec") or {})
    policy.restrict(user, "create", "serviceaccounts", "token",
                    {"metadata": {"name": name, "namespace": ns}, "spec": spec}, sa.obj, api.view)
    audiences = spec.get("audiences") or list(API_AUDIENCES)
    expiration = spec.get("expirationSeconds") or 3600
    if expiration < signer.min_expiration_seconds:
        floor = f"{signer.min_expiration_seconds // 60} minutes" if signer.min_expiration_seconds % 60 == 0 \
            else f"{signer.min_expiration_seconds} seconds"
        raise errors.invalid("TokenRequest", name, [{
            "reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
            "message": f"Invalid value: {expiration}: may not specify a duration less than {floor}"}],
            "authentication.k8s.io")
    pod = None
    ref = spec.get("boundObjectRef")
    if ref:
        if ref.get("kind") != "Pod":
            raise errors.bad_request(f"cannot bind token to object of type {ref.get('kind')}")
        p = api.store.get("pods", ns, ref.get("name", ""))
        if p is None:
            raise errors.not_found("pods", ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != p.obj["metadata"]["uid"]:
            raise errors.conflict("pods", ref["name"], f"the UID in the bound object reference ({ref['uid']}) does "
                                  f"not match the UID in record. The object might have been deleted and then "
                                  f"recreated")
        if (p.obj.get("spec") or {}).get("serviceAccountName", "default") != name:
            raise errors.bad_request(f'cannot bind token for serviceaccount "{name}" to pod running with '
                                     f'different serviceaccount name.')
        pod = {"name": p.obj["metadata"]["name"], "uid": p.obj["metadata"]["uid"]}
        node_name = (p.obj.get("spec") or {}).get("nodeName")
        node = api.store.get("nodes", "", node_name) if node_name else None
        if node is not None:
            pod["node"] = {"name": node_name, "uid": node.obj["metadata"]["uid"]}
    token, exp = signer.issue(ns, name, sa.obj["metadata"]["uid"], audiences=audiences,
                              expiration_seconds=expiration, pod=pod)
    spec.update({"audiences": audiences, "expirationSeconds": expiration})
    spec.setdefault("boundObjectRef", None)
    return 201, {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_rfc3339()},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(exp)},
    }
