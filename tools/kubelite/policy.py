"""The seam to kubelite's pure policy modules (patch, selectors, admission, RBAC).

Their own error types are turned into :class:`~.errors.ApiError` here, so the
HTTP edge maps one error type.
"""

from __future__ import annotations

from . import admission, errors, rbac, selectors
from .admission import noderestriction
from .patch import (MAX_JSON_PATCH_OPERATIONS, JsonPatchNotApplied, PatchError, json_patch, merge_patch,
                    strategic_merge_patch)

# NewGenericServerResponse's text for a 422: what kube-apiserver answers to a JSON patch that does not apply
NOT_APPLIED = "the server rejected our request due to an error in our request"


# -- patches ----------------------------------------------------------------

def apply_patch(kind_of_patch: str, obj: dict, patch, kind: str) -> dict:
    """Apply a patch of type ``merge`` / ``strategic`` / ``json`` / ``apply``; 422 on a bad patch.

    JSON patch as kube-apiserver: not an array 400, over 10000 operations 413, not applicable
    (failed test, missing path, unknown op) 422 with the generic message and empty details.
    """
    try:
        if kind_of_patch == "json":
            if not isinstance(patch, list):
                raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            if len(patch) > MAX_JSON_PATCH_OPERATIONS:
                raise errors.ApiError(413, "RequestEntityTooLarge",
                                      "Request entity too large: The allowed maximum operations in a JSON patch "
                                      f"is {MAX_JSON_PATCH_OPERATIONS}, got {len(patch)}")
            return json_patch(obj, patch)
        if not isinstance(patch, dict):
            raise errors.bad_request("patch body must be a JSON object")
        if kind_of_patch == "merge":
            return merge_patch(obj, patch)
        return strategic_merge_patch(obj, patch, kind)
    except JsonPatchNotApplied:
        raise errors.ApiError(422, "Invalid", NOT_APPLIED, {}) from None
    except PatchError as e:
        raise errors.ApiError(422, "Invalid", str(getattr(e, "message", e))) from None


# -- selectors --------------------------------------------------------------

def label_selector(text: str | None):
    """A matcher with ``.matches(labels)``, or None for no selector; 400 on bad syntax."""
    if not text:
        return None
    try:
        sel = selectors.parse_label_selector(text)
    except selectors.SelectorError as e:
        raise errors.bad_request(f"unable to parse requirement: {e.message}") from None
    return None if sel.empty() else sel


def field_selector(text: str | None, resource: str):
    """A matcher with ``.matches(obj)``, or None; 400 on bad syntax or unsupported field."""
    if not text:
        return None
    try:
        sel = selectors.parse_field_selector(text)
        selectors.check_field_selector(sel, resource)
    except selectors.SelectorError as e:
        raise errors.bad_request(e.message) from None
    return None if sel.empty() else sel


# -- admission --------------------------------------------------------------

def _admission_error(e) -> errors.ApiError:
    return errors.ApiError(e.code, e.reason, e.message, getattr(e, "details", None))


def admit_create(resource: str, obj: dict, view) -> dict:
    """Mutating + validating admission on create."""
    try:
        return admission.admit_create(resource, obj, view)
    except admission.AdmissionError as e:
        raise _admission_error(e) from None


def restrict(user, op: str, resource: str, sub: str | None, obj: dict | None, old: dict | None, view) -> None:
    """NodeRestriction: a 403 when a node identity reaches beyond its own objects."""
    noderestriction.admit(user, op, resource, sub, obj, old, view)


def admit_update(resource: str, old: dict, new: dict, view) -> dict:
    try:
        return admission.admit_update(resource, old, new, view)
    except admission.AdmissionError as e:
        raise _admission_error(e) from None


# -- authorization ----------------------------------------------------------

def authorize(user: str, groups, attrs: dict, view) -> tuple[bool, str]:
    """``--authorization-mode=Node,RBAC``: ``system:masters`` first, then the Node authorizer, then RBAC.

    As upstream's union authorizer: the first "allow" wins; the reasons of those with no
    opinion are joined by newlines.
    """
    if "system:masters" in groups:
        return True, ""
    reasons = []
    node = getattr(view, "node_authorizer", None)
    if node is not None:
        allowed, reason = node.authorize(user, list(groups), attrs)
        if allowed:
            return True, reason
        if reason:
            reasons.append(reason)
    allowed, reason = rbac.authorize(user, list(groups), attrs, view)
    if allowed:
        return True, reason
    if reason:
        reasons.append(reason)
    return False, "\n".join(reasons)


def forbidden_message(user: str, attrs: dict, reason: str) -> str:
    return rbac.forbidden_message(user, attrs, reason)


def bootstrap_objects() -> list[tuple[str, dict]]:
    return rbac.bootstrap_objects()
