"""Authentication and authorization rules: the kubelet's path mapping, caches, and the outcomes over HTTPS.

The review callables here are the injection points the app fills with
``vkcmd.kube.reviews``; the real reviews against the control plane are in
``test_control_plane.py``.
"""

from __future__ import annotations

import ssl

import pytest

from vkcmd.kubeletapi.auth import (Authenticator, Authorizer, User, access_review_spec, bearer_token,
                                   request_attributes, user_from_certificate)
from vkcmd.kubeletapi.backend import Forbidden, Unauthorized, Unavailable

from .conftest import LocalPKI


@pytest.mark.parametrize("method, path, verb, subresources", [
    ("GET", "/stats/summary", "get", ["stats"]),
    ("GET", "/stats", "get", ["stats"]),
    ("GET", "/metrics", "get", ["metrics"]),
    ("GET", "/metrics/resource", "get", ["metrics"]),
    ("GET", "/logs/syslog", "get", ["log"]),
    ("GET", "/spec/", "get", ["spec"]),
    ("POST", "/checkpoint/ns/pod/c", "create", ["checkpoint"]),
    ("GET", "/containerLogs/ns/pod/c", "get", ["proxy"]),
    ("POST", "/exec/ns/pod/c", "create", ["proxy"]),
    ("GET", "/pods", "get", ["pods", "proxy"]),
    ("GET", "/statsx", "get", ["proxy"]),
    ("PUT", "/foo", "update", ["proxy"]),
    ("PATCH", "/foo", "patch", ["proxy"]),
    ("DELETE", "/foo", "delete", ["proxy"]),
    ("HEAD", "/foo", "", ["proxy"]),
])
def test_request_attributes_follow_the_kubelet(method, path, verb, subresources):
    attributes = request_attributes("node-1", method, path)
    assert [a.subresource for a in attributes] == subresources
    assert {(a.verb, a.resource, a.name, a.api_group) for a in attributes} == {(verb, "nodes", "node-1", "")}


def test_access_review_spec_shape():
    user = User("jane", ("devs", "system:authenticated"), "u-1", (("scopes", ("a", "b")),))
    spec = access_review_spec(user, request_attributes("node-1", "GET", "/stats/summary")[0])
    assert spec == {"user": "jane", "groups": ["devs", "system:authenticated"], "uid": "u-1",
                    "extra": {"scopes": ["a", "b"]},
                    "resourceAttributes": {"verb": "get", "group": "", "version": "v1", "resource": "nodes",
                                           "subresource": "stats", "name": "node-1"}}


def test_user_from_certificate_and_bearer_header():
    cert = {"subject": ((("organizationName", "system:masters"),), (("organizationName", "ops"),),
                        (("commonName", "jane"),))}
    assert user_from_certificate(cert) == User("jane", ("system:masters", "ops"))
    assert user_from_certificate({}) is None and user_from_certificate(None) is None
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer", "Bearer a b"):
        assert bearer_token(header) is None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_token_reviews_are_cached_by_outcome():
    clock, calls = Clock(), []

    def review(token):
        calls.append(token)
        return {"username": "sa", "groups": ["g"]} if token == "good" else None

    authenticator = Authenticator(review, clock=clock)
    assert authenticator.authenticate(None, "Bearer good") == User("sa", ("g",))
    assert authenticator.authenticate(None, "Bearer good").name == "sa"
    for _ in range(2):
        with pytest.raises(Unauthorized):
            authenticator.authenticate(None, "Bearer bad")
    assert calls == ["good", "bad"]
    clock.now += 31  # negative answers expire after 30 s, positive ones after 2 min
    with pytest.raises(Unauthorized):
        authenticator.authenticate(None, "Bearer bad")
    authenticator.authenticate(None, "Bearer good")
    assert calls == ["good", "bad", "bad"]
    clock.now += 100
    authenticator.authenticate(None, "Bearer good")
    assert calls == ["good", "bad", "bad", "good"]


def test_token_review_failure_is_401_and_not_cached():
    calls = []

    def review(token):
        calls.append(token)
        raise ConnectionError("API down")

    authenticator = Authenticator(review)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            authenticator.authenticate(None, "Bearer t")
    assert len(calls) == 2


def test_no_credentials_is_401_even_with_always_allow():
    with pytest.raises(Unauthorized):
        Authenticator(None).authenticate(None, None)
    with pytest.raises(Unauthorized):
        Authenticator(None).authenticate(None, "Bearer token-but-no-reviewer")


def test_access_reviews_are_cached_and_denials_worded_like_the_kubelet():
    clock, specs = Clock(), []

    def review(spec):
        specs.append(spec)
        return spec["user"] == "ops" and spec["resourceAttributes"]["subresource"] == "stats", "rbac"

    authorizer = Authorizer("node-1", review, clock=clock)
    ops, dev = User("ops"), User("dev", ("devs",))
    authorizer.authorize(ops, "GET", "/stats/summary")
    authorizer.authorize(ops, "GET", "/stats/summary")
    assert len(specs) == 1
    with pytest.raises(Forbidden) as denied:
        authorizer.authorize(dev, "GET", "/containerLogs/a/b/c")
    assert denied.value.message == "Forbidden (user=dev, verb=get, resource=nodes, subresource(s)=[proxy])"
    with pytest.raises(Forbidden) as denied:
        authorizer.authorize(dev, "GET", "/pods")
    assert denied.value.message.endswith("subresource(s)=[pods proxy])")
    calls = len(specs)
    with pytest.raises(Forbidden):
        authorizer.authorize(dev, "GET", "/containerLogs/x/y/z")  # same attributes: cached denial
    assert len(specs) == calls
    clock.now += 31
    with pytest.raises(Forbidden):
        authorizer.authorize(dev, "GET", "/containerLogs/x/y/z")
    assert len(specs) == calls + 1
    clock.now += 270  # allowed answers last 5 minutes
    authorizer.authorize(ops, "GET", "/stats/summary")
    assert len(specs) == calls + 2


def test_access_review_failure_is_an_authorization_error():
    def review(spec):
        raise TimeoutError("API down")

    with pytest.raises(Unavailable) as failed:
        Authorizer("node-1", review).authorize(User("x"), "GET", "/pods")
    assert failed.value.status == 500 and failed.value.message.startswith("Authorization error (user=x")


# --- over HTTPS ------------------------------------------------------------------------------

def test_outcomes_over_https(serve, get, backend, pki, tmp_path):
    def review_token(token):
        return {"username": "system:serviceaccount:ns:reader", "groups": ["system:serviceaccounts"]} \
            if token == "reader-token" else None

    def review_access(spec):
        return spec["user"] in ("tester", "system:serviceaccount:ns:reader"), ""

    server = serve(backend, review_token=review_token, review_access=review_access)
    tester, stranger = pki.client("tester"), pki.client("stranger")
    assert get(server, "/pods")[:3:2] == (401, b"Unauthorized")
    assert get(server, "/pods", token="wrong")[0] == 401
    assert get(server, "/pods", token="reader-token")[0] == 200
    assert get(server, "/pods", cert=tester)[0] == 200
    status, _, body = get(server, "/stats/summary", cert=stranger)
    assert (status, body) == (403, b"Forbidden (user=stranger, verb=get, resource=nodes, subresource(s)=[stats])")
    assert get(server, "/healthz", cert=stranger)[0] == 200
    assert get(server, "/nothing")[0] == 401  # authentication comes before routing, as in the kubelet
    assert get(server, "/nothing", cert=stranger)[0] == 403

    rogue = LocalPKI(tmp_path, "rogue-ca")
    rogue_admin = rogue.client("tester", ["system:masters"])
    try:
        status = get(server, "/pods", cert=rogue_admin)[0]
    except (ssl.SSLError, ConnectionError, OSError):
        status = "tls-rejected"
    assert status in ("tls-rejected", 401)


def test_always_allow_still_requires_authentication(serve, get, backend, pki):
    server = serve(backend)  # no access reviewer: AlwaysAllow
    assert get(server, "/pods")[0] == 401
    assert get(server, "/pods", cert=pki.client("anyone"))[0] == 200
