"""Service-account tokens: TokenRequest -> TokenReview, bearer authentication, expiry."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tools.kubelite.tokens import TokenInvalid, TokenSigner


@pytest.fixture(scope="module")
def core(kube_client):
    return client.CoreV1Api(kube_client)


def claims_of(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def request_token(core, namespace, sa="default", **spec):
    return core.create_namespaced_service_account_token(sa, namespace, {"spec": spec}).status.token


def review(kube_client, token, audiences=None):
    spec = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    return client.AuthenticationV1Api(kube_client).create_token_review({"spec": spec}).status


def test_token_request_review_round_trip(core, kube_client, namespace):
    sa = core.read_namespaced_service_account("default", namespace)
    token = request_token(core, namespace)
    claims = claims_of(token)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:default"
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "default", "uid": sa.metadata.uid}
    assert claims["exp"] - claims["iat"] == 3600 and claims["iss"] and claims["aud"]
    status = review(kube_client, token)
    assert status.authenticated is True
    assert status.user.username == f"system:serviceaccount:{namespace}:default"
    assert status.user.uid == sa.metadata.uid
    assert set(status.user.groups) == {"system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                       "system:authenticated"}


def test_token_bound_to_pod(core, kube_client, namespace):
    pod = core.create_namespaced_pod(namespace, {"metadata": {"name": "tp"},
                                                 "spec": {"containers": [{"name": "c", "image": "none"}]}})
    token = request_token(core, namespace, boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "tp",
                                                           "uid": pod.metadata.uid})
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "tp", "uid": pod.metadata.uid}
    status = review(kube_client, token)
    assert status.authenticated and status.user.extra["authentication.kubernetes.io/pod-name"] == ["tp"]
    core.delete_namespaced_pod("tp", namespace)
    assert review(kube_client, token).authenticated is False


def test_audiences(core, kube_client, namespace):
    token = request_token(core, namespace, audiences=["vkcmd"])
    assert review(kube_client, token, ["vkcmd"]).authenticated is True
    status = review(kube_client, token, ["other"])
    assert status.authenticated is False and status.error
    assert review(kube_client, token).authenticated is False  # not for the apiserver


def test_token_of_deleted_service_account_is_rejected(core, kube_client, namespace):
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "gone"}})
    token = request_token(core, namespace, sa="gone")
    assert review(kube_client, token).authenticated is True
    core.delete_namespaced_service_account("gone", namespace)
    assert review(kube_client, token).authenticated is False


def test_token_request_for_missing_service_account_is_404(core, namespace):
    with pytest.raises(ApiException) as ei:
        request_token(core, namespace, sa="nobody")
    assert ei.value.status == 404


def test_tampered_token_is_rejected(core, kube_client, namespace):
    token = request_token(core, namespace)
    head, body, sig = token.split(".")
    forged = json.dumps({**claims_of(token), "sub": "system:serviceaccount:kube-system:admin"}).encode()
    forged_b64 = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert review(kube_client, f"{head}.{forged_b64}.{sig}").authenticated is False


def test_bearer_token_authenticates_api_calls(control_plane, core, kube_client, namespace, tmp_path):
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "bot"}})
    token = request_token(core, namespace, sa="bot")
    path = control_plane.write_kubeconfig(str(tmp_path / "bot.kubeconfig"), token=token)
    bot_client = config.new_client_from_config(config_file=path)
    try:
        bot = client.CoreV1Api(bot_client)
        with pytest.raises(ApiException) as ei:
            bot.list_namespaced_pod(namespace)
        assert ei.value.status == 403
        assert f"system:serviceaccount:{namespace}:bot" in json.loads(ei.value.body)["message"]
        client.RbacAuthorizationV1Api(kube_client).create_namespaced_role_binding(namespace, {
            "metadata": {"name": "bot-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": namespace}]})
        assert bot.list_namespaced_pod(namespace).items == []
        core.delete_namespaced_service_account("bot", namespace)
        with pytest.raises(ApiException) as ei:
            bot.list_namespaced_pod(namespace)
        assert ei.value.status == 401
    finally:
        bot_client.close()


def test_signer_expiry_with_a_fake_clock():
    now = [1_000_000.0]
    signer = TokenSigner(clock=lambda: now[0])
    token, exp = signer.issue("ns", "sa", "uid-1", expiration_seconds=600)
    claims, matched = signer.verify(token)
    assert claims.username == "system:serviceaccount:ns:sa" and matched
    now[0] = exp + 1
    with pytest.raises(TokenInvalid, match="expired"):
        signer.verify(token)
    other = TokenSigner()
    with pytest.raises(TokenInvalid):
        other.verify(token)
