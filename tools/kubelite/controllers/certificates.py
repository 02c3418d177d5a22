"""The csrapproving and csrsigning controllers of kube-controller-manager, for the kubelet signers.

Owns auto-approval (a kubelet client CSR whose requestor may create
``certificatesigningrequests/nodeclient`` — bootstrap tokens with kubeadm's
bindings — or ``/selfnodeclient`` for its own name, asked by SubjectAccessReview)
and signing of approved CSRs of the kubelet client and serving signers with
the cluster CA (``sign`` passed in), for ``expirationSeconds`` capped at
``max_seconds``. Serving CSRs are signed but never auto-approved, as upstream.
"""

from __future__ import annotations

import base64
import threading

from .. import csr as csrs
from .base import Worker
from .informers import Informers
from .kube import Kube, now_rfc3339


PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def _condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


class CertificateController(Worker):
    """One named worker thread: approve what the rules allow, then sign what is approved."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event, *, sign, max_seconds: int):
        super().__init__("kubelite-csr", stop)
        self.kube = kube
        self.sign = sign
        self.max_seconds = max_seconds
        self.csrs = informers.get(PATH, "csrs")
        self.csrs.add_handler(lambda e, obj, old: e != "DELETED" and self.queue.add(obj["metadata"]["name"]))

    what = "csr"

    def handle(self, name: str) -> None:
        obj = self.csrs.get(name)
        if obj is None or (obj.get("status") or {}).get("certificate") or _condition(obj, "Failed"):
            return
        if _condition(obj, "Denied"):
            return
        spec = obj.get("spec") or {}
        try:
            req = csrs.parse_request(obj)
        except ValueError:
            return
        if _condition(obj, "Approved") is None:
            self._maybe_approve(obj, spec, req)
            return
        signer = spec.get("signerName")
        if signer == csrs.KUBELET_CLIENT_SIGNER:
            why, server = csrs.is_kubelet_client(req, spec.get("usages")), False
        elif signer == csrs.KUBELET_SERVING_SIGNER:
            why, server = csrs.is_kubelet_serving(req, spec.get("usages")), True
        else:
            return  # another signer's request
        status = dict(obj.get("status") or {})
        if why:
            status["conditions"] = list(status.get("conditions") or []) + [{
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": why,
                "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}]
        else:
            seconds = min(int(spec.get("expirationSeconds") or self.max_seconds), self.max_seconds)
            status["certificate"] = base64.b64encode(self.sign(req, seconds, server)).decode()
        self.kube.request("PUT", f"{PATH}/{name}/status", body={**obj, "status": status})

    def _maybe_approve(self, obj: dict, spec: dict, req) -> None:
        if spec.get("signerName") != csrs.KUBELET_CLIENT_SIGNER or csrs.is_kubelet_client(req, spec.get("usages")):
            return
        cn = csrs.common_name(req)
        checks = []
        if cn == spec.get("username"):
            checks.append(("selfnodeclient", "Auto approving self kubelet client certificate after "
                                             "SubjectAccessReview."))
        checks.append(("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."))
        for sub, message in checks:
            review = self.kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": spec.get("username"), "groups": spec.get("groups") or [], "uid": spec.get("uid"),
                         "extra": spec.get("extra") or {},
                         "resourceAttributes": {"group": "certificates.k8s.io", "resource":
                                                "certificatesigningrequests", "verb": "create", "subresource": sub}}})
            if (review.get("status") or {}).get("allowed"):
                status = dict(obj.get("status") or {})
                status["conditions"] = list(status.get("conditions") or []) + [{
                    "type": "Approved", "status": "True", "reason": "AutoApproved", "message": message,
                    "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}]
                self.kube.request("PUT", f"{PATH}/{obj['metadata']['name']}/approval", body={**obj, "status": status})
                return
