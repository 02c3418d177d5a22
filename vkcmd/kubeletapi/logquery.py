"""The query of ``/containerLogs``: decoded and validated as the kubelet does, into LogOptions.

Decoding follows the v1 ``PodLogOptions`` parameter codec (booleans are true
unless ``0`` or ``false``; integers must parse; ``sinceTime`` is RFC 3339; the
legacy ``tail`` wins over ``tailLines`` and ``tail=all`` means no limit): what
does not decode is :class:`BadRequest` (400). Then the kubelet's validation
(``tailLines >= 0``, ``limitBytes >= 1``, ``sinceSeconds >= 1``, not both since
forms): what fails it is :class:`Invalid` (422). Pure.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence

from vkcmd.kubeletapi.backend import BadRequest, Invalid, LogOptions

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _first(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _boolean(query: Mapping[str, Sequence[str]], name: str) -> bool:
    value = _first(query, name)
    if value is None:
        return False
    return not (value == "0" or value.lower() == "false")


def _integer(query: Mapping[str, Sequence[str]], name: str) -> int | None:
    value = _first(query, name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[+-]?\d+", value):
        raise BadRequest(f"Unable to decode query: {name}={value!r} is not an integer")
    number = int(value)
    if not -(2 ** 63) <= number < 2 ** 63:
        raise BadRequest(f"Unable to decode query: {name}={value!r} is out of range")
    return number


def parse_rfc3339_ns(value: str) -> int:
    """Unix nanoseconds of an RFC 3339 time (fractional seconds kept to the nanosecond)."""
    match = _RFC3339.match(value)
    if not match:
        raise ValueError(value)
    fraction = match.group(1) or ""
    whole = value[:match.start(1)] + value[match.end(1):] if fraction else value
    moment = datetime.datetime.fromisoformat(whole.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    nanos = int((fraction[1:] + "000000000")[:9]) if fraction else 0
    return int(moment.timestamp()) * 1_000_000_000 + nanos


def parse_log_options(query: Mapping[str, Sequence[str]], now_ns: int) -> LogOptions:
    """LogOptions from a parsed query string (``urllib.parse.parse_qs(..., keep_blank_values=True)``)."""
    query = dict(query)
    tail = _first(query, "tail")
    if tail:  # backwards compatibility, as the kubelet: "tail" overrides "tailLines"; "all" means no limit
        query.pop("tailLines", None)
        if tail != "all":
            query["tailLines"] = [tail]
    tail_lines = _integer(query, "tailLines")
    limit_bytes = _integer(query, "limitBytes")
    since_seconds = _integer(query, "sinceSeconds")
    since_time = _first(query, "sinceTime")
    since_time_ns = None
    if since_time:
        try:
            since_time_ns = parse_rfc3339_ns(since_time)
        except ValueError:
            raise BadRequest(f"Unable to decode query: sinceTime={since_time!r} is not an RFC 3339 time") from None

    problems = []
    if tail_lines is not None and tail_lines < 0:
        problems.append(f"tailLines: Invalid value: {tail_lines}: must be greater than or equal to 0")
    if limit_bytes is not None and limit_bytes < 1:
        problems.append(f"limitBytes: Invalid value: {limit_bytes}: must be greater than 0")
    if since_seconds is not None and since_time_ns is not None:
        problems.append("Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")
    elif since_seconds is not None and since_seconds < 1:
        problems.append(f"sinceSeconds: Invalid value: {since_seconds}: must be greater than 0")
    if problems:
        raise Invalid("Invalid request: " + ", ".join(problems))

    if since_seconds is not None:
        since_time_ns = now_ns - since_seconds * 1_000_000_000
    return LogOptions(follow=_boolean(query, "follow"), tail_lines=tail_lines, timestamps=_boolean(query, "timestamps"),
                      since_time_ns=since_time_ns, limit_bytes=limit_bytes, previous=_boolean(query, "previous"))
