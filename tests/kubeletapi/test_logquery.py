"""/containerLogs query parameters: decoded and validated as the kubelet does."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from vkcmd.kubeletapi.backend import BadRequest, Invalid, LogOptions
from vkcmd.kubeletapi.logquery import parse_log_options, parse_rfc3339_ns

NOW = 1_700_000_000 * 10**9


def parse(query: str) -> LogOptions:
    return parse_log_options(parse_qs(query, keep_blank_values=True), NOW)


def test_defaults():
    assert parse("") == LogOptions()


def test_every_parameter():
    options = parse("follow=true&tailLines=10&timestamps=1&limitBytes=500&previous=True&sinceSeconds=60")
    assert options == LogOptions(follow=True, tail_lines=10, timestamps=True, since_time_ns=NOW - 60 * 10**9,
                                 limit_bytes=500, previous=True)


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("yes", True), ("", True),
                                             ("false", False), ("False", False), ("0", False)])
def test_booleans_decode_like_the_parameter_codec(value, expected):
    assert parse(f"follow={value}").follow is expected


def test_legacy_tail():
    assert parse("tail=5").tail_lines == 5
    assert parse("tail=5&tailLines=7").tail_lines == 5
    assert parse("tail=all&tailLines=7").tail_lines is None
    assert parse("tailLines=").tail_lines is None


def test_since_time_rfc3339():
    assert parse("sinceTime=2023-11-14T22:13:20Z").since_time_ns == NOW
    assert parse("sinceTime=2023-11-14T23:13:20%2B01:00").since_time_ns == NOW
    assert parse_rfc3339_ns("2023-11-14T22:13:20.123456789Z") == NOW + 123456789
    assert parse_rfc3339_ns("2023-11-14T22:13:20.5Z") == NOW + 500_000_000


@pytest.mark.parametrize("query", ["tailLines=ten", "limitBytes=1.5", "sinceSeconds=abc",
                                   "sinceTime=2023-11-14", "sinceTime=2023-11-14T22:13:20", "sinceTime=now"])
def test_undecodable_values_are_bad_requests(query):
    with pytest.raises(BadRequest) as error:
        parse(query)
    assert error.value.status == 400 and "Unable to decode query" in error.value.message


@pytest.mark.parametrize("query, words", [
    ("tailLines=-1", "tailLines: Invalid value: -1: must be greater than or equal to 0"),
    ("limitBytes=0", "limitBytes: Invalid value: 0: must be greater than 0"),
    ("sinceSeconds=0", "sinceSeconds: Invalid value: 0: must be greater than 0"),
    ("sinceSeconds=5&sinceTime=2023-11-14T22:13:20Z", "at most one of `sinceTime` or `sinceSeconds`"),
])
def test_invalid_values_fail_validation(query, words):
    with pytest.raises(Invalid) as error:
        parse(query)
    assert error.value.status == 422 and words in error.value.message
