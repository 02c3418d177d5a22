"""Admission's error vocabulary: upstream's field.Error wording, 422 Invalid / 403 Forbidden, name rules.

Owns how a refusal reads (`FieldError`, `invalid`, `forbidden`) and the name
checks (RFC 1123 label / subdomain) every plugin shares.  Knows no resource.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ApiError


class AdmissionError(ApiError):
    """An admission refusal: HTTP code, Kubernetes reason, message, optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(code, reason, message, details)


@dataclass(frozen=True)
class FieldError:
    field: str
    kind: str           # Required | Duplicate | Invalid | NotFound | NotSupported | Forbidden
    value: Any = None
    detail: str = ""

    _REASONS = {
        "Required": ("FieldValueRequired", "Required value"),
        "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
        "Invalid": ("FieldValueInvalid", "Invalid value"),
        "NotFound": ("FieldValueNotFound", "Not found"),
        "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
        "Forbidden": ("FieldValueForbidden", "Forbidden"),
    }

    def body(self) -> str:
        reason, text = self._REASONS[self.kind]
        if self.kind in ("Required", "Forbidden"):
            return f"{text}: {self.detail}" if self.detail else text
        shown = f'"{self.value}"' if isinstance(self.value, str) else go_value(self.value)
        out = f"{text}: {shown}"
        return f"{out}: {self.detail}" if self.detail else out

    def cause(self) -> dict:
        return {"reason": self._REASONS[self.kind][0], "message": self.body(),
                "field": self.field}


def go_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return str(value)


def invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> AdmissionError:
    causes = [e.cause() for e in errors]
    parts = [f"{e.field}: {e.body()}" for e in errors]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details: dict = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    qualified = f"{kind}.{group}" if group else kind
    return AdmissionError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
              "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric character "
                  "(e.g. 'example.com', regex used for validation is "
                  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                  "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                  "is '[-._a-zA-Z0-9]+')")


def _dns_check(limit: int, pattern: re.Pattern, message: str) -> Callable[[str, str], list[FieldError]]:
    def check(path: str, value: str) -> list[FieldError]:
        if len(value) > limit:
            return [FieldError(path, "Invalid", value, f"must be no more than {limit} characters")]
        if not pattern.match(value):
            return [FieldError(path, "Invalid", value, message)]
        return []
    return check


label_errors = _dns_check(63, LABEL_RE, LABEL_MSG)
subdomain_errors = _dns_check(253, SUBDOMAIN_RE, SUBDOMAIN_MSG)


def name_errors(obj: dict, check: Callable[[str, str], list[FieldError]]) -> list[FieldError]:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        return []  # generateName: the server names it after admission
    return check("metadata.name", name)


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return meta.get("name") or meta.get("generateName") or ""


def forbidden(resource: str, name: str, why: str, group: str = "") -> AdmissionError:
    """403 as upstream's NewForbidden: `<resource>[.<group>] "<name>" is forbidden: <why>`."""
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return AdmissionError(403, "Forbidden", f"{subject} is forbidden: {why}", details)


def supported(values: tuple[str, ...]) -> str:
    return "supported values: " + ", ".join(f'"{v}"' for v in values)
