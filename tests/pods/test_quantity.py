"""Kubernetes quantities parsed exactly, rounded as the API rounds."""

from fractions import Fraction

import pytest

from vkcmd.pods.quantity import cpu_cores, memory_bytes, milli_value_ceil, parse_quantity, value_ceil


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("1", 1), ("+2", 2), ("-3", -3), ("1.5", Fraction(3, 2)), (".5", Fraction(1, 2)), ("5.", 5),
    ("250m", Fraction(1, 4)), ("100u", Fraction(1, 10_000)), ("3n", Fraction(3, 10**9)),
    ("1k", 1000), ("1M", 10**6), ("2G", 2 * 10**9), ("1T", 10**12), ("1P", 10**15), ("1E", 10**18),
    ("1Ki", 1024), ("32Mi", 32 * 2**20), ("1.5Gi", 3 * 2**29), ("1Ti", 2**40), ("1Pi", 2**50), ("1Ei", 2**60),
    ("1e3", 1000), ("1E3", 1000), ("5e-1", Fraction(1, 2)), ("1.2e+2", 120), (" 64Mi ", 64 * 2**20),
    (7, 7), (0.5, Fraction(1, 2)),
])
def test_parse(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Mi", "1.2.3", "1 Mi", "1mi", "1KiB", "1e", "e3", "--1", "abc", "1e999",
                                  "0x10", None, True, [1]])
def test_invalid(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_rounding_is_up_like_the_api():
    assert value_ceil(parse_quantity("1500m")) == 2
    assert milli_value_ceil(parse_quantity("1n")) == 1
    assert memory_bytes("0.5") == 1
    assert memory_bytes("256Mi") == 268435456
    assert cpu_cores("250m") == 0.25
    assert cpu_cores("2") == 2.0
