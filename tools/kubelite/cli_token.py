"""``python -m tools.kubelite token create``: a bootstrap token and its kubeconfig, as ``kubeadm token create``.

Owns the shape of a ``bootstrap-token-<id>`` Secret (kube-system, type ``bootstrap.kubernetes.io/token``)
and the bootstrap kubeconfig that carries only the cluster's address, its CA and the token. It is an API
client of a running kubelite (or any cluster) through an admin kubeconfig; it knows nothing of the store.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import re
import secrets
import sys

import yaml

DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
#: The roles a bootstrap token's group needs so that a node's first CSR is created and auto-approved.
NEEDED_ROLES = ("system:node-bootstrapper", "system:certificates.k8s.io:certificatesigningrequests:nodeclient")


def parse_duration(text: str) -> float | None:
    """Seconds of a Go duration (``24h``, ``1h30m``, ``90s``); None for ``0`` (never expires)."""
    if text.strip() in ("0", "0s"):
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"invalid duration {text!r} (examples: 24h, 30m, 1h30m, 0 for no expiry)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def token_secret(ttl: float | None, groups=(DEFAULT_GROUP,), description: str = "kubelite bootstrap token",
                 now: datetime.datetime | None = None) -> tuple[str, dict]:
    """A fresh token ``<id>.<secret>`` and the kube-system Secret that backs it (kubeadm's fields)."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    token_value = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    data = {"token-id": token_id, "token-secret": token_value, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true", "auth-extra-groups": ",".join(groups), "description": description}
    if ttl is not None:
        expires = (now or datetime.datetime.now(datetime.timezone.utc)) + datetime.timedelta(seconds=ttl)
        data["expiration"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
              "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
              "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    return f"{token_id}.{token_value}", secret


def bootstrap_kubeconfig(server: str, ca_data: str, token: str) -> dict:
    """What ``kubeadm join`` writes as ``bootstrap-kubelet.conf``: the cluster and the token, nothing else."""
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
            "users": [{"name": "tls-bootstrap-token-user", "user": {"token": token}}],
            "contexts": [{"name": "tls-bootstrap-token-user@cluster",
                          "context": {"cluster": "cluster", "user": "tls-bootstrap-token-user"}}],
            "current-context": "tls-bootstrap-token-user@cluster"}


def _cluster_of(kubeconfig: str) -> tuple[str, str]:
    """(server, base64 CA) of the admin kubeconfig's current context."""
    with open(kubeconfig) as handle:
        config = yaml.safe_load(handle) or {}
    contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
    context = contexts.get(config.get("current-context")) or next(iter(contexts.values()), {})
    clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters") or []}
    cluster = clusters.get(context.get("cluster")) or next(iter(clusters.values()), {})
    ca = cluster.get("certificate-authority-data")
    if not ca and cluster.get("certificate-authority"):
        path = os.path.join(os.path.dirname(os.path.abspath(kubeconfig)), cluster["certificate-authority"])
        with open(path, "rb") as handle:
            ca = base64.b64encode(handle.read()).decode()
    if not cluster.get("server") or not ca:
        raise ValueError(f"{kubeconfig}: the current context names no cluster with a server and a CA")
    return cluster["server"], ca


def write_private(path: str, text: str) -> None:
    """``text`` to ``path``, mode 0600, atomically (an exclusive temporary sibling, renamed)."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def missing_bindings(rbac, groups) -> list[str]:
    """The roles of :data:`NEEDED_ROLES` that no ClusterRoleBinding grants to any of ``groups``."""
    bound = set()
    for binding in rbac.list_cluster_role_binding().items:
        if any(s.kind == "Group" and s.name in groups for s in binding.subjects or []):
            bound.add(binding.role_ref.name)
    return [role for role in NEEDED_ROLES if role not in bound]


def create(args: argparse.Namespace) -> int:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    server, ca = _cluster_of(args.kubeconfig)
    out_dir = os.path.dirname(os.path.abspath(args.kubeconfig_out)) if args.kubeconfig_out else ""
    if out_dir and not os.path.isdir(out_dir):  # before the token exists: no orphan token on a bad path
        raise ValueError(f"--kubeconfig-out {args.kubeconfig_out}: no directory {out_dir}")
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    token, secret = token_secret(args.ttl, groups, args.description)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    try:
        try:
            client.CoreV1Api(api).create_namespaced_secret("kube-system", secret)
            missing = missing_bindings(client.RbacAuthorizationV1Api(api), groups)
        except ApiException as error:
            print(f"token create: the API refused: {error.status} {error.reason}", file=sys.stderr)
            return 1
    finally:
        api.close()
    if missing:
        print(f"token create: warning: no ClusterRoleBinding grants {', '.join(missing)} to {', '.join(groups)}: "
              "a node's CSR with this token will not be created or approved (see deploy/node-bootstrap.yaml)",
              file=sys.stderr)
    text = yaml.safe_dump(bootstrap_kubeconfig(server, ca, token), sort_keys=False)
    expires = base64.b64decode(secret["data"]["expiration"]).decode() if "expiration" in secret["data"] else "never"
    if args.kubeconfig_out:
        write_private(args.kubeconfig_out, text)
        print(f"bootstrap token {token.split('.')[0]} (groups {','.join(groups)}, expires {expires}): "
              f"kubeconfig written to {args.kubeconfig_out} (0600)")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kubelite token", description=(
        "Bootstrap tokens for nodes joining the cluster (like kubeadm token create)."))
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create", help="create a bootstrap token and print (or write) its kubeconfig")
    make.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                      help="an admin kubeconfig of the cluster (default: $KUBECONFIG)")
    make.add_argument("--ttl", default="24h", help="how long the token lives (Go duration; 0: forever; default 24h)")
    make.add_argument("--groups", default=DEFAULT_GROUP,
                      help=f"extra groups of the token, comma-separated (default {DEFAULT_GROUP})")
    make.add_argument("--description", default="bootstrap token made by python -m tools.kubelite token create")
    make.add_argument("--kubeconfig-out", metavar="PATH",
                      help="write the bootstrap kubeconfig to PATH (0600) instead of printing it")
    args = parser.parse_args(argv)
    if not args.kubeconfig:
        parser.error("no admin kubeconfig: pass --kubeconfig or set KUBECONFIG")
    try:
        args.ttl = parse_duration(args.ttl)
    except ValueError as error:
        parser.error(str(error))
    try:
        return create(args)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"token create: {error}", file=sys.stderr)
        return 1
