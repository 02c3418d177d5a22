"""``vkcmd.config.parse_quantity`` against the oracle, ``kubernetes.utils.parse_quantity``.

Where both accept, the values are equal; where the oracle accepts what is not
the Kubernetes quantity grammar (NaN, infinity, whitespace, an exponent and a
suffix together, upper-case K, non-ASCII digits), ours refuses, listed below.
"""

from decimal import Decimal

import pytest
from kubernetes.utils import parse_quantity as oracle

from vkcmd.config import parse_quantity

NUMBERS = ["0", "1", "12", "007", "1.5", ".5", "1.", "-3", "+2.25", "-0.001", "123456789012345678901234567890"]
SUFFIXES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
            "e3", "E-2", "e+4", "e0", "ki", "mi", "ni", "ui", "Kb", "i", "e", "ee1", "e1.5", "x", "MiB", "kk"]
MALFORMED = ["", "-", "+", ".", "..5", "1..2", "--1", "k", "Mi", "1,5", "0x10", "1/2", "½", "nan", "2.5Ki "]
#: accepted by the oracle (Python's Decimal is lax), not quantities for Kubernetes
LAX = ["NaN", "inf", "Infinity", "-inf", "sNaN", " 4", "4 ", "1 k", "1_000", "1K", "1.5e3k", "1e3Mi", "1E3E",
       "\t8Gi", "１"]
CASES = [n + s for n in NUMBERS for s in SUFFIXES] + MALFORMED


def _result(parse, text):
    try:
        return parse(text)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("text", CASES)
def test_same_as_the_kubernetes_client(text):
    ours, theirs = _result(parse_quantity, text), _result(oracle, text)
    assert ours == theirs, f"{text!r}: ours {ours!r}, oracle {theirs!r}"
    if ours is not ValueError:
        assert isinstance(ours, Decimal)


@pytest.mark.parametrize("text", LAX)
def test_refuses_what_is_not_the_quantity_grammar(text):
    assert _result(oracle, text) is not ValueError  # the oracle takes it ...
    with pytest.raises(ValueError):  # ... Kubernetes does not
        parse_quantity(text)


def test_known_values():
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("8Gi") == 8 * 2**30
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("3u") == Decimal("0.000003")
    assert parse_quantity(4) == 4 and parse_quantity(Decimal("2.5")) == Decimal("2.5")
    with pytest.raises(ValueError):
        parse_quantity(None)
