"""fieldValidation (Strict / Warn / Ignore): unknown and duplicate fields, as kube-apiserver's strict decoding.

Owns the known-fields tree of each built-in kind, derived lazily from the
`kubernetes` client's model classes (`openapi_types` + `attribute_map`: a
complete schema of the built-in kinds), JSON decoding that remembers
duplicate keys, and the walk that names unknown and duplicate fields in
document order and drops the unknown ones (as decoding into a typed object
does).  `object`-typed fields (free-form, IntOrString) take anything; a kind
with no model is not checked.  `check_body` serves create and update,
`PatchCheck` a patch (the document itself for merge/strategic, the result for
JSON patch).  Knows no HTTP: it returns texts, raises `ApiError`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from . import errors

DIRECTIVES = ("Ignore", "Strict", "Warn")


class Body:
    """A decoded JSON body and the keys that appeared twice, per object (by id; rare, so usually empty)."""

    __slots__ = ("value", "duplicates")

    def __init__(self, value: Any, duplicates: dict[int, list[str]]):
        self.value = value
        self.duplicates = duplicates


def loads(data: bytes | str) -> Body:
    """`json.loads`, noting duplicate keys (the last value wins, as in Go)."""
    duplicates: dict[int, list[str]] = {}

    def pairs(items: list) -> dict:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            dups = []
            for key, _ in items:
                if key in seen and key not in dups:
                    dups.append(key)
                seen.add(key)
            duplicates[id(obj)] = dups
        return obj

    return Body(json.loads(data, object_pairs_hook=pairs), duplicates)


def directive(query: dict, verb: str) -> str:
    """The request's fieldValidation (Warn when absent, as the server's default); 422 on another value."""
    value = query.get("fieldValidation") or "Warn"
    if value not in DIRECTIVES:
        kind = {"create": "CreateOptions", "update": "UpdateOptions"}.get(verb, "PatchOptions")
        raise errors.ApiError(
            422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "{value}": '
            'supported values: "", "Ignore", "Strict", "Warn"',
            {"group": "meta.k8s.io", "kind": kind, "causes": [{
                "reason": "FieldValueNotSupported", "field": "fieldValidation",
                "message": f'Unsupported value: "{value}": supported values: "", "Ignore", "Strict", "Warn"'}]})
    return value


# -- the schema ---------------------------------------------------------------

def _models():
    from kubernetes import client  # imported on first use: the models are many
    return client


def _model_name(kind: str, api_version: str) -> str | None:
    group, _, version = api_version.rpartition("/")
    ver = version[:1].upper() + version[1:]
    client = _models()
    prefix = "Core" if not group else group.split(".")[0].capitalize()
    for name in (f"{ver}{kind}", f"{prefix}{ver}{kind}"):
        if hasattr(client, name) and hasattr(getattr(client, name), "attribute_map"):
            return name
    return None


@functools.lru_cache(maxsize=None)
def _fields(model: str) -> dict[str, str]:
    """JSON field name -> type string of one model class ({} for a class without fields)."""
    cls = getattr(_models(), model, None)
    types = getattr(cls, "openapi_types", None) or {}
    names = getattr(cls, "attribute_map", None) or {}
    return {names.get(attr, attr): kind for attr, kind in types.items()}


@functools.lru_cache(maxsize=None)
def _inner(kind: str) -> tuple[str, str]:
    """('list', item type) / ('map', value type) / ('model', name) / ('any', '') of a type string."""
    low = kind[:5].lower()
    if low == "list[":
        return "list", kind[5:-1]
    if low == "dict(":
        return "map", kind[5:-1].split(",", 1)[1].strip()
    if kind[:5] == "Dict[":
        return "map", kind[5:-1].split(",", 1)[1].strip()
    if kind[:1].isupper() and hasattr(_models(), kind):
        return "model", kind
    return "any", ""


# -- the walk -----------------------------------------------------------------

def _walk(value: Any, kind: str, path: str, body: Body, found: list[str], drop: bool) -> None:
    shape, inner = _inner(kind)
    if shape == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, inner, f"{path}[{i}]", body, found, drop)
    elif shape == "map" and isinstance(value, dict):
        for key, item in value.items():
            _walk(item, inner, f"{path}[{key}]", body, found, drop)
    elif shape == "model" and isinstance(value, dict):
        fields = _fields(inner)
        dups = body.duplicates.get(id(value), ())
        unknown = []
        for key in list(value):
            sub = fields.get(key)
            if sub is None and key[:1] == "$":  # a strategic merge patch directive ($patch, $setElementOrder/..)
                continue
            if sub is None:
                found.append(f'unknown field "{path}.{key}"' if path else f'unknown field "{key}"')
                unknown.append(key)
                continue
            if key in dups:
                found.append(f'duplicate field "{path}.{key}"' if path else f'duplicate field "{key}"')
            if _inner(sub)[0] != "any":  # scalars and free-form values: nothing below to check
                _walk(value[key], sub, f"{path}.{key}" if path else key, body, found, drop)
        if drop:
            for key in unknown:
                del value[key]


def strict_errors(kind: str, api_version: str, body: Body, *, drop: bool = True) -> list[str]:
    """The strict-decoding errors of `body.value` as a `kind` object, in document order.

    Unknown fields are removed from the value when `drop` (every directive: a
    typed API server cannot store them).
    """
    model = _model_name(kind, api_version) if isinstance(body.value, dict) else None
    if model is None:
        return []
    found: list[str] = []
    _walk(body.value, model, "", body, found, drop)
    return found


def check_body(kind: str, api_version: str, body: Body, mode: str) -> list[str]:
    """Create/update: 400 on Strict with errors; the warning texts on Warn; nothing on Ignore."""
    found = strict_errors(kind, api_version, body)
    if not found or mode == "Ignore":
        return []
    if mode == "Strict":
        version = api_version.rpartition("/")[2]
        raise errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: '
                                 f'strict decoding error: {", ".join(found)}')
    return found


class PatchCheck:
    """fieldValidation of one patch request: `found` (the warning texts), `check` for the patched object."""

    def __init__(self, kind: str, api_version: str, patch: Body, mode: str, kind_of_patch: str):
        self.kind, self.api_version, self.mode = kind, api_version, mode
        self.found: list[str] = []
        self.check = None  # a hook on the patched object, when one is needed
        if kind_of_patch == "json":  # operations may add a field anywhere: look at the result
            self.check = self._check_result
            return
        # merge / strategic / apply: the patch has the object's shape, and the stored object has no
        # unknown field, so the patch's own unknown fields are all there are (a small walk, not the object)
        found = strict_errors(kind, api_version, patch, drop=False)
        if found and mode == "Strict":
            if kind_of_patch == "merge":  # upstream shows the patched JSON: refuse once it exists
                self.found, self.check = found, self._refuse
                return
            raise _patch_invalid(found, _go_value(patch.value))
        if found:
            strict_errors(kind, api_version, patch)  # dropped before the patch is applied
            self.found = found if mode == "Warn" else []

    def _check_result(self, patched: dict) -> dict:
        found = strict_errors(self.kind, self.api_version, Body(patched, {}), drop=False)
        if found and self.mode == "Strict":
            raise _patch_invalid(found, json.dumps(patched, separators=(",", ":")))
        if found:
            strict_errors(self.kind, self.api_version, Body(patched, {}))
        self.found = found if self.mode == "Warn" else []
        return patched

    def _refuse(self, patched: dict) -> dict:
        raise _patch_invalid(self.found, json.dumps(patched, separators=(",", ":")))


def _patch_invalid(found: list[str], shown: str) -> errors.ApiError:
    """422 as kube-apiserver's patch handler: `patch: Invalid value: <shown>: strict decoding error: ...`."""
    body = f"Invalid value: {json.dumps(shown)}: strict decoding error: " + ", ".join(found)
    return errors.ApiError(422, "Invalid", f' "" is invalid: patch: {body}',
                           {"causes": [{"reason": "FieldValueInvalid", "message": body, "field": "patch"}]})


def _go_value(value: Any) -> str:
    """Go's `%+v` of a decoded JSON value (maps with sorted keys)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def warning_header(text: str) -> str:
    """One `Warning` header value (RFC 7234 warn-code 299, agent "-", the text quoted)."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
