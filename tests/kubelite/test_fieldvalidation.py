"""fieldValidation=Strict|Warn|Ignore on create, update and patch, as kube-apiserver answers it.

Through the real `kubernetes` client's ApiClient (raw JSON: its pydantic models refuse unknown fields on
the client side before a request is sent, so the server's answer is reached with `param_serialize`), raw
bytes for duplicate keys, kubectl (whose default is --validate=strict), and a real vkcmd node whose own
writes must never draw a warning.
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes.client.exceptions import ApiException

BAD_POD = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "bad", "labels": {"any": "label"}, "namspace": "typo"},
           "spec": {"containers": [{"name": "c", "image": "x", "imag": "y",
                                    "resources": {"limits": {"cpu": "1"}}}],
                    "foo": {"bar": 1}}}
BAD_POD_ERRORS = ['unknown field "metadata.namspace"', 'unknown field "spec.containers[0].imag"',
                  'unknown field "spec.foo"']


def call(api, method: str, path: str, body, *, query=(), ctype: str = "application/json"):
    """One raw request; returns (status, Warning header texts, decoded body)."""
    request = api.param_serialize(method, path, query_params=list(query) or None,
                                  header_params={"Content-Type": ctype, "Accept": "application/json"},
                                  body=body, auth_settings=["BearerToken"])
    try:
        response = api.call_api(*request)
        response.read()
        status, headers, data = response.status, response.getheaders(), response.data
    except ApiException as exc:
        status, headers, data = exc.status, exc.headers, exc.body
    return status, warnings_of(headers), json.loads(data)


def warnings_of(headers) -> list[str]:
    """The texts of `Warning: 299 - "..."` headers (urllib3 joins repeated headers with ", ")."""
    raw = headers.get("Warning") if headers else None
    if not raw:
        return []
    out, rest = [], raw
    while rest:
        assert rest.startswith('299 - "'), raw
        i, text = 7, []
        while rest[i] != '"':
            if rest[i] == "\\":
                i += 1
            text.append(rest[i])
            i += 1
        out.append("".join(text))
        rest = rest[i + 1:].lstrip(", ")
    return out


def pods(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


def test_strict_create_is_400_with_every_unknown_field_in_document_order(kube_client, namespace):
    status, warnings, body = call(kube_client, "POST", pods(namespace), BAD_POD, query=[("fieldValidation", "Strict")])
    assert status == 400 and body["reason"] == "BadRequest" and warnings == []
    assert body["message"] == ('Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                               + ", ".join(BAD_POD_ERRORS))
    assert call(kube_client, "GET", f"{pods(namespace)}/bad", None)[0] == 404


@pytest.mark.parametrize("query", [[("fieldValidation", "Warn")], []])  # Warn is the server's default
def test_warn_creates_with_a_warning_per_field_and_drops_them(kube_client, namespace, query):
    status, warnings, body = call(kube_client, "POST", pods(namespace), BAD_POD, query=query)
    assert status == 201 and warnings == BAD_POD_ERRORS
    stored = call(kube_client, "GET", f"{pods(namespace)}/bad", None)[2]
    assert "foo" not in stored["spec"] and "imag" not in stored["spec"]["containers"][0]
    assert "namspace" not in stored["metadata"] and stored["metadata"]["labels"] == {"any": "label"}
    assert stored["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1"}  # a map: kept whole


def test_ignore_creates_silently_and_drops_them(kube_client, namespace):
    status, warnings, body = call(kube_client, "POST", pods(namespace), BAD_POD, query=[("fieldValidation", "Ignore")])
    assert status == 201 and warnings == []
    assert "foo" not in call(kube_client, "GET", f"{pods(namespace)}/bad", None)[2]["spec"]


def test_free_form_fields_take_anything(kube_client, namespace):
    """`object` fields (IntOrString, managedFields' fieldsV1, ...) and maps are not checked below."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "free", "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}],
                                     "readinessProbe": {"httpGet": {"port": "http", "path": "/"}}}]}}
    status, warnings, _ = call(kube_client, "POST", pods(namespace), body, query=[("fieldValidation", "Strict")])
    assert (status, warnings) == (201, [])


def test_duplicate_fields_are_named_in_strict_and_warned(kube_client, namespace):
    raw = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup"},'
           '"data":{"a":"1","a":"2"},"dta":{}}')
    url = kube_client.configuration.host + f"/api/v1/namespaces/{namespace}/configmaps"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    strict = kube_client.rest_client.pool_manager.request("POST", url + "?fieldValidation=Strict", body=raw,
                                                          headers=headers)
    assert strict.status == 400
    assert json.loads(strict.data)["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'duplicate field "metadata.name", unknown field "dta"')  # keys of a map (data) may repeat: last wins
    warn = kube_client.rest_client.pool_manager.request("POST", url, body=raw, headers=headers)
    assert warn.status == 201
    assert warnings_of(warn.headers) == ['duplicate field "metadata.name"', 'unknown field "dta"']
    assert json.loads(warn.data)["data"] == {"a": "2"}


def test_update_and_status_are_checked_too(kube_client, namespace):
    call(kube_client, "POST", pods(namespace), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "u"},
                                                "spec": {"containers": [{"name": "c", "image": "x"}]}})
    current = call(kube_client, "GET", f"{pods(namespace)}/u", None)[2]
    current["status"]["phaseX"] = "Running"
    status, _, body = call(kube_client, "PUT", f"{pods(namespace)}/u/status", current,
                           query=[("fieldValidation", "Strict")])
    assert status == 400 and body["message"].endswith('strict decoding error: unknown field "status.phaseX"')
    for _ in range(5):  # the scheduler may write the pod (Unschedulable) between our GET and PUT: 409, retry
        current = call(kube_client, "GET", f"{pods(namespace)}/u", None)[2]
        current["status"]["phaseX"] = "Running"
        current["metadata"]["labels"] = {"x": "y"}
        status, warnings, body = call(kube_client, "PUT", f"{pods(namespace)}/u", current)
        if status != 409:
            break
    assert status == 200 and warnings == ['unknown field "status.phaseX"'] and "phaseX" not in body["status"]


@pytest.mark.parametrize("ctype,shown", [
    ("application/merge-patch+json", None),
    ("application/strategic-merge-patch+json", '"map[spec:map[foo:1]]"'),
])
def test_patch_strict_is_422_warn_warns(kube_client, namespace, ctype, shown):
    call(kube_client, "POST", pods(namespace), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pt"},
                                                "spec": {"containers": [{"name": "c", "image": "x"}]}})
    status, _, body = call(kube_client, "PATCH", f"{pods(namespace)}/pt", {"spec": {"foo": 1}},
                           query=[("fieldValidation", "Strict")], ctype=ctype)
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith(' "" is invalid: patch: Invalid value: ')
    assert body["message"].endswith(': strict decoding error: unknown field "spec.foo"')
    if shown:
        assert body["message"] == f' "" is invalid: patch: Invalid value: {shown}: strict decoding error: ' \
                                  'unknown field "spec.foo"'
    status, warnings, body = call(kube_client, "PATCH", f"{pods(namespace)}/pt",
                                  {"metadata": {"labels": {"l": "1"}}, "spec": {"foo": 1}}, ctype=ctype)
    assert status == 200 and warnings == ['unknown field "spec.foo"']
    assert body["metadata"]["labels"] == {"l": "1"} and "foo" not in body["spec"]


def test_an_unsupported_directive_is_422(kube_client, namespace):
    status, _, body = call(kube_client, "POST", pods(namespace), BAD_POD, query=[("fieldValidation", "Loose")])
    assert status == 422
    assert body["message"] == ('CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: '
                               '"Loose": supported values: "", "Ignore", "Strict", "Warn"')


BAD_YAML = """apiVersion: v1
kind: Pod
metadata:
  name: typo
spec:
  containers:
  - name: c
    image: x
    imagePullPolicyy: Never
"""


def test_kubectl_apply_refuses_a_misspelled_field_and_validate_false_creates(kubectl, namespace, kube_client):
    refused = kubectl("apply", "-n", namespace, "-f", "-", input=BAD_YAML)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as '
        'a Pod: strict decoding error: unknown field "spec.containers[0].imagePullPolicyy"')
    created = kubectl("apply", "-n", namespace, "--validate=false", "-f", "-", input=BAD_YAML, check=True)
    assert created.stdout.strip() == "pod/typo created" and created.stderr == ""
    stored = call(kube_client, "GET", f"{pods(namespace)}/typo", None)[2]
    assert "imagePullPolicyy" not in stored["spec"]["containers"][0]
    warned = kubectl("apply", "-n", namespace, "--validate=warn", "-f", "-", input=BAD_YAML, check=True)
    assert 'Warning: unknown field "spec.containers[0].imagePullPolicyy"' in warned.stderr


def test_a_vkcmd_node_never_draws_a_field_warning(control_plane, kubectl, namespace, tmp_path):
    """Registration, lease, node status, pod statuses (running, probes, exit, failure), events, cordon."""
    from tests.e2e.node import Node, pod_manifest

    control_plane.api.field_warnings.clear()
    node = Node(control_plane, tmp_path, name="vk-fieldvalidation").start()
    try:
        ok = pod_manifest("ok", ["sh", "-c", "sleep 2"], node=node.name)
        ok["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
        node.create(ok, namespace)
        node.create(pod_manifest("fails", ["sh", "-c", "echo no >&2; exit 3"], node=node.name), namespace)
        assert node.wait_phase("ok", namespace=namespace, timeout=60)["status"]["phase"] == "Succeeded"
        assert node.wait_phase("fails", namespace=namespace, timeout=60)["status"]["phase"] == "Failed"
        kubectl("cordon", node.name, check=True)
        time.sleep(1.5)  # a heartbeat or two
    finally:
        assert node.stop() == 0, node.log()
    assert list(control_plane.api.field_warnings) == []


def test_a_json_patch_is_checked_on_its_result(kube_client, namespace):
    call(kube_client, "POST", pods(namespace), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jp"},
                                                "spec": {"containers": [{"name": "c", "image": "x"}]}})
    ops = [{"op": "add", "path": "/spec/containers/0/imag", "value": "y"}]
    status, _, body = call(kube_client, "PATCH", f"{pods(namespace)}/jp", ops, query=[("fieldValidation", "Strict")],
                           ctype="application/json-patch+json")
    assert status == 422
    assert body["message"].endswith(': strict decoding error: unknown field "spec.containers[0].imag"')
    status, warnings, body = call(kube_client, "PATCH", f"{pods(namespace)}/jp", ops,
                                  ctype="application/json-patch+json")
    assert status == 200 and warnings == ['unknown field "spec.containers[0].imag"']
    assert "imag" not in body["spec"]["containers"][0]


def test_strategic_directives_are_not_fields(kube_client, namespace):
    call(kube_client, "POST", pods(namespace), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smp"},
                                                "spec": {"containers": [{"name": "c", "image": "x"}]}})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}],
                      "containers": [{"name": "c", "image": "z", "$patch": "merge"}]}}
    status, warnings, body = call(kube_client, "PATCH", f"{pods(namespace)}/smp", patch,
                                  query=[("fieldValidation", "Strict")], ctype="application/strategic-merge-patch+json")
    assert (status, warnings) == (200, []) and body["spec"]["containers"][0]["image"] == "z"
