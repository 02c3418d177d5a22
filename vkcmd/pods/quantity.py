"""Kubernetes resource quantities ("250m", "1.5Gi", "2e3") as exact fractions.

Follows the quantity grammar of the API (a signed decimal number, then a
binary-SI suffix Ki..Ei, a decimal-SI suffix n u m k M G T P E, or a decimal
exponent e<n>/E<n>) and the kubelet's rounding: values round up to whole units.
Knows nothing else; exists so that ``vkcmd.pods`` needs no Kubernetes client.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_NUMBER = re.compile(r"([+-]?)(\d+\.?\d*|\.\d+)(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?\d+)")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_MAX_EXPONENT = 64  # far beyond any real quantity; keeps "1e999999999" from eating memory


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; ``ValueError`` naming the text when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"invalid quantity {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"invalid quantity {value!r}")
        return Fraction(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid quantity {value!r}")
    text = value.strip()
    match = _NUMBER.fullmatch(text)
    if not match:
        raise ValueError(f"invalid quantity {value!r}")
    sign, digits, suffix = match.groups()
    if digits.endswith("."):
        digits += "0"
    number = Fraction(digits if not digits.startswith(".") else "0" + digits)
    if sign == "-":
        number = -number
    if suffix in _BINARY:
        return number * 1024 ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * Fraction(10) ** _DECIMAL[suffix]
    exponent = _EXPONENT.fullmatch(suffix)
    if exponent:
        power = int(exponent.group(1))
        if abs(power) > _MAX_EXPONENT:
            raise ValueError(f"invalid quantity {value!r}: exponent out of range")
        return number * Fraction(10) ** power
    raise ValueError(f"invalid quantity {value!r}: unknown suffix {suffix!r}")


def value_ceil(quantity: Fraction) -> int:
    """Whole units, rounded up (the API's ``Value()``): bytes of a memory quantity."""
    return math.ceil(quantity)


def milli_value_ceil(quantity: Fraction) -> int:
    """Thousandths, rounded up (the API's ``MilliValue()``): millicores of a CPU quantity."""
    return math.ceil(quantity * 1000)


def memory_bytes(value: str | int | float) -> int:
    """Bytes of a memory quantity, rounded up: ``memory_bytes("1Mi") == 1048576``."""
    return value_ceil(parse_quantity(value))


def cpu_cores(value: str | int | float) -> float:
    """Cores of a CPU quantity: ``cpu_cores("250m") == 0.25``."""
    return float(parse_quantity(value))
