"""The ServiceAccount admission plugin: a pod's service account, its pull secrets and token volume.

Owns defaulting `serviceAccountName` (and the deprecated alias), refusing a
pod whose account does not exist (403, upstream's words), copying the
account's imagePullSecrets and adding the projected `kube-api-access-*`
volume with its mounts unless automount is off.  Mirror pods are skipped.
"""

from __future__ import annotations

import copy
import secrets as _random
from typing import Any

from .fielderrors import forbidden

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION_SECONDS = 3607
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String alphabet


def _token_volume(name: str) -> dict:
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                         "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    }


def admit_pod(pod: dict, view: Any) -> None:
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return
    spec = pod["spec"]
    namespace = meta.get("namespace") or "default"
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa_name
    spec["serviceAccount"] = sa_name  # the deprecated alias is kept in step
    account = view.get("serviceaccounts", namespace, sa_name)
    if account is None:
        raise forbidden("pods", meta.get("name") or "",
                         f"error looking up service account {namespace}/{sa_name}: "
                         f'serviceaccount "{sa_name}" not found')
    if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
        spec["imagePullSecrets"] = copy.deepcopy(account["imagePullSecrets"])
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken")
    if automount is False:
        return
    volumes = spec.setdefault("volumes", [])
    existing = next((v["name"] for v in volumes
                     if isinstance(v, dict) and str(v.get("name", "")).startswith(TOKEN_VOLUME_PREFIX)),
                    None)
    volume_name = existing or TOKEN_VOLUME_PREFIX + "".join(
        _random.choice(_RANDOM_ALPHABET) for _ in range(5))
    if existing is None:
        volumes.append(_token_volume(volume_name))
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            mounts = c.setdefault("volumeMounts", [])
            if not any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                mounts.append({"name": volume_name, "readOnly": True,
                               "mountPath": TOKEN_MOUNT_PATH})
