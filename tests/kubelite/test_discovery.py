"""Discovery: /version, legacy and aggregated discovery, OpenAPI v3 stubs."""

from __future__ import annotations

import json

from kubernetes import client


def get(kube_client, path, accept="application/json"):
    resp = kube_client.call_api(*kube_client.param_serialize("GET", path, header_params={"Accept": accept},
                                                             auth_settings=["BearerToken"]))
    resp.read()
    return resp.status, resp.getheader("Content-Type"), json.loads(resp.data)


def test_version(kube_client):
    v = client.VersionApi(kube_client).get_code()
    assert v.major == "1" and v.git_version.startswith("v1.")


def test_legacy_discovery(kube_client):
    assert client.CoreApi(kube_client).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(kube_client).get_api_versions().groups}
    assert {"apps", "coordination.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
            "rbac.authorization.k8s.io", "events.k8s.io"} <= groups
    core = client.CoreV1Api(kube_client).get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["pods"].namespaced and by_name["pods"].kind == "Pod" and "watch" in by_name["pods"].verbs
    assert {"pods/status", "pods/binding", "pods/log", "pods/eviction", "nodes/status",
            "serviceaccounts/token"} <= set(by_name)
    assert not by_name["nodes"].namespaced
    apps = {r.name for r in client.AppsV1Api(kube_client).get_api_resources().resources}
    assert {"deployments", "deployments/scale", "replicasets/status"} <= apps


def test_aggregated_discovery(kube_client):
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, ctype, doc = get(kube_client, "/apis", accept)
    assert status == 200 and "as=APIGroupDiscoveryList" in ctype and "v=v2" in ctype
    assert doc["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in doc["items"] if i["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced"
    assert {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]} in deploy["subresources"]
    _, _, core = get(kube_client, "/api", accept)
    assert core["items"][0]["metadata"]["name"] == ""
    # plain JSON when not asked for aggregated discovery
    _, ctype, legacy = get(kube_client, "/api")
    assert ctype == "application/json" and legacy["kind"] == "APIVersions"


def test_openapi_v3_index_and_documents(kube_client):
    _, _, index = get(kube_client, "/openapi/v3")
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    _, _, doc = get(kube_client, url.split("?")[0])
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
