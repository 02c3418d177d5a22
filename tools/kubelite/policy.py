"""The seam to kubelite's pure policy modules (patch, selectors, admission, RBAC).

Each is imported lazily at first use; their own error types are turned into
:class:`~.errors.ApiError` here, so the HTTP edge maps one error type. A
missing module degrades as documented per function (they are developed in
parallel and always present in a complete checkout).
"""

from __future__ import annotations

import importlib
import logging

from . import errors

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _module(name: str):
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        if name not in _warned:
            _warned.add(name)
            log.warning("kubelite: policy module %s missing; degraded behaviour", name)  # TODO: always present
        return None


# -- patches ----------------------------------------------------------------

def apply_patch(kind_of_patch: str, obj: dict, patch, kind: str) -> dict:
    """Apply a patch of type ``merge`` / ``strategic`` / ``json`` / ``apply``; 422 on a bad patch."""
    mod = _module("patch")
    if mod is None:
        raise errors.ApiError(501, "NotImplemented", "patch support is not available")
    try:
        if kind_of_patch == "json":
            if not isinstance(patch, list):
                raise errors.bad_request("json patch must be a list of operations")
            return mod.json_patch(obj, patch)
        if not isinstance(patch, dict):
            raise errors.bad_request("patch body must be a JSON object")
        if kind_of_patch == "merge":
            return mod.merge_patch(obj, patch)
        return mod.strategic_merge_patch(obj, patch, kind)
    except mod.PatchError as e:
        raise errors.ApiError(422, "Invalid", str(getattr(e, "message", e))) from None


# -- selectors --------------------------------------------------------------

def label_selector(text: str | None):
    """A matcher with ``.matches(labels)``, or None for no selector; 400 on bad syntax."""
    if not text:
        return None
    mod = _module("selectors")
    if mod is None:
        raise errors.bad_request("label selectors are not available")
    try:
        sel = mod.parse_label_selector(text)
    except mod.SelectorError as e:
        raise errors.bad_request(f"unable to parse requirement: {e.message}") from None
    return None if sel.empty() else sel


def field_selector(text: str | None, resource: str):
    """A matcher with ``.matches(obj)``, or None; 400 on bad syntax or unsupported field."""
    if not text:
        return None
    mod = _module("selectors")
    if mod is None:
        raise errors.bad_request("field selectors are not available")
    try:
        sel = mod.parse_field_selector(text)
        mod.check_field_selector(sel, resource)
    except mod.SelectorError as e:
        raise errors.bad_request(e.message) from None
    return None if sel.empty() else sel


# -- admission --------------------------------------------------------------

def _admission_error(mod, e) -> errors.ApiError:
    return errors.ApiError(e.code, e.reason, e.message, getattr(e, "details", None))


def admit_create(resource: str, obj: dict, view) -> dict:
    """Mutating + validating admission on create (passes through when the module is missing)."""
    mod = _module("admission")
    if mod is None:
        return obj
    try:
        return mod.admit_create(resource, obj, view)
    except mod.AdmissionError as e:
        raise _admission_error(mod, e) from None


def admit_update(resource: str, old: dict, new: dict, view) -> dict:
    mod = _module("admission")
    if mod is None:
        return new
    try:
        return mod.admit_update(resource, old, new, view)
    except mod.AdmissionError as e:
        raise _admission_error(mod, e) from None


# -- authorization ----------------------------------------------------------

def authorize(user: str, groups, attrs: dict, view) -> tuple[bool, str]:
    """RBAC decision; ``system:masters`` always allowed. Without the module only masters are."""
    if "system:masters" in groups:
        return True, ""
    mod = _module("rbac")
    if mod is None:
        return False, "RBAC is not available"
    return mod.authorize(user, list(groups), attrs, view)


def forbidden_message(user: str, attrs: dict, reason: str) -> str:
    mod = _module("rbac")
    if mod is not None and hasattr(mod, "forbidden_message"):
        return mod.forbidden_message(user, attrs, reason)
    return f'forbidden: User "{user}" cannot do this' + (f": {reason}" if reason else "")


def bootstrap_objects() -> list[tuple[str, dict]]:
    mod = _module("rbac")
    return mod.bootstrap_objects() if mod is not None else []
