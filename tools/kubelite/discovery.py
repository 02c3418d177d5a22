"""Discovery documents: /version, legacy and aggregated (apidiscovery v2) discovery, OpenAPI v3 stubs.

Pure functions from the resource table to JSON-ready dicts. The OpenAPI v3
documents are minimal: one path per resource whose PATCH operation names its
group-version-kind and the ``fieldValidation``/``dryRun`` query parameters,
which is what kubectl reads to decide that validation happens server-side.
No schemas are served (kubectl then builds apply patches from its own types).
"""

from __future__ import annotations

import hashlib
import json

from .resources import Resource, group_versions, groups

GIT_VERSION = "v1.31.0-kubelite"
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def version() -> dict:
    return {"major": "1", "minor": "31", "gitVersion": GIT_VERSION, "gitCommit": "kubelite",
            "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
            "compiler": "gc", "platform": "linux/amd64"}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _gv_entry(group: str) -> dict:
    gv = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_gv_entry(g) for g in groups()]}


def api_group(group: str) -> dict | None:
    if group not in groups():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_gv_entry(group)}


def _storage_hash(r: Resource) -> str:
    return hashlib.sha256(f"{r.group}/{r.version}/{r.kind}".encode()).hexdigest()[:11]


def resource_list(group_version: str) -> dict | None:
    """The legacy ``APIResourceList`` of ``/api/v1`` or ``/apis/<group>/<version>``."""
    rs = group_versions().get(group_version)
    if rs is None:
        return None
    out = []
    for r in rs:
        item = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": list(r.verbs)}
        if r.short_names:
            item["shortNames"] = list(r.short_names)
        if r.categories:
            item["categories"] = list(r.categories)
        if "list" in r.verbs:
            item["storageVersionHash"] = _storage_hash(r)
        out.append(item)
        for s in r.subresources:
            sub = {"name": f"{r.plural}/{s.name}", "singularName": "", "namespaced": r.namespaced,
                   "kind": s.kind or r.kind, "verbs": list(s.verbs)}
            if s.group is not None:
                sub["group"], sub["version"] = s.group, s.version
            out.append(sub)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}


def _aggregated_resource(r: Resource) -> dict:
    item = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
            "verbs": list(r.verbs)}
    if r.short_names:
        item["shortNames"] = list(r.short_names)
    if r.categories:
        item["categories"] = list(r.categories)
    if r.subresources:
        item["subresources"] = [
            {"subresource": s.name,
             "responseKind": {"group": r.group if s.group is None else s.group,
                              "version": r.version if s.version is None else s.version,
                              "kind": s.kind or r.kind},
             "verbs": list(s.verbs)}
            for s in r.subresources]
    return item


def aggregated(core: bool) -> dict:
    """``APIGroupDiscoveryList`` (apidiscovery.k8s.io/v2) for ``/api`` (core) or ``/apis``."""
    by_gv = group_versions()
    names = [""] if core else groups()
    items = []
    for g in names:
        rs = by_gv["v1" if not g else f"{g}/v1"]
        items.append({"metadata": {"name": g, "creationTimestamp": None},
                      "versions": [{"version": "v1", "resources": [_aggregated_resource(r) for r in rs],
                                    "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def wants_aggregated(accept: str) -> bool:
    """True when the Accept header asks for apidiscovery.k8s.io/v2 aggregated discovery."""
    for part in accept.split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip()
                  for p in part.split(";")[1:] if "=" in p}
        if params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2" \
                and params.get("as") == "APIGroupDiscoveryList":
            return True
    return False


# -- OpenAPI v3 -----------------------------------------------------------------

def _openapi_key(group_version: str) -> str:
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


def openapi_v3_doc(group_version: str) -> dict | None:
    rs = group_versions().get(group_version)
    if rs is None:
        return None
    paths = {}
    query = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
             for n in ("dryRun", "fieldManager", "fieldValidation")]
    for r in rs:
        if "patch" not in r.verbs:
            continue
        prefix = r.path_prefix()
        path = f"{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}" if r.namespaced \
            else f"{prefix}/{r.plural}/{{name}}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        paths[path] = {
            "patch": {"operationId": f"patch{r.kind}", "parameters": query,
                      "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                      "responses": {"200": {"description": "OK"}}},
            "parameters": query,
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": paths,
            "components": {"schemas": {}}}


def openapi_v3_index() -> dict:
    paths = {}
    for gv in group_versions():
        doc = json.dumps(openapi_v3_doc(gv), sort_keys=True).encode()
        key = _openapi_key(gv)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={hashlib.sha512(doc).hexdigest()[:32].upper()}"}
    return {"paths": paths}


def openapi_v3_for_path(path: str) -> dict | None:
    """The document served at ``/openapi/v3/<path>`` (``api/v1`` or ``apis/<g>/<v>``)."""
    if path == "api/v1":
        return openapi_v3_doc("v1")
    if path.startswith("apis/"):
        return openapi_v3_doc(path[len("apis/"):])
    return None
