"""Resource quantities in kube-apiserver's canonical form (``1000`` -> ``1k``, ``1024Mi`` -> ``1Gi``).

Owns parsing and canonical formatting of ``resource.Quantity`` strings, keeping
the input's format (decimal SI, binary SI, decimal exponent) as upstream does,
and rewriting the quantity maps of Nodes (capacity, allocatable) and pod
containers (requests, limits) on write. Strings that do not parse are left for
validation. Knows nothing else.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_RE = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}


def _parse(text: str) -> tuple[Fraction, str] | None:
    m = _RE.match(text.strip())
    if m is None:
        return None
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix in _BINARY:
        return number * 1024 ** _BINARY[suffix], "binary"
    if suffix[:1] in ("e", "E"):
        return number * Fraction(10) ** int(suffix[1:]), "exponent"
    return number * Fraction(10) ** _DECIMAL[suffix], "decimal"


def value(text) -> Fraction:
    """The exact value of a quantity (``"1k"`` -> 1000); ValueError when it does not parse."""
    parsed = _parse(str(text))
    if parsed is None:
        raise ValueError(f"quantities must match the regular expression: {text!r}")
    return parsed[0]


def canonical(text) -> str:
    """The canonical spelling of quantity ``text``; anything unparsable comes back unchanged."""
    if not isinstance(text, str):
        return text if not isinstance(text, int) else canonical(str(text))
    parsed = _parse(text)
    if parsed is None:
        return text
    value, fmt = parsed
    if value == 0:
        return "0"
    if fmt == "binary" and value.denominator == 1 and abs(value) >= 1024:
        n, v = 0, value.numerator
        while n < 6 and v % 1024 == 0:
            v //= 1024
            n += 1
        return f"{v}{_BINARY_SUFFIX.get(n, '')}"
    # decimal: round up to nano, then the largest multiple-of-3 exponent keeping an integer mantissa
    nanos = math.ceil(value * 10 ** 9)
    exp = -9
    while exp < 18 and nanos % 1000 == 0:
        nanos //= 1000
        exp += 3
    if fmt == "exponent":
        return f"{nanos}e{exp}" if exp else str(nanos)
    return f"{nanos}{_DECIMAL_SUFFIX[exp]}"


def _canonical_map(values) -> None:
    if isinstance(values, dict):
        for k, v in list(values.items()):
            values[k] = canonical(v)


def canonicalize(resource_key: str, obj: dict) -> None:
    """Rewrite the quantities of a Node or Pod in place, as the apiserver stores them."""
    if resource_key == "nodes":
        status = obj.get("status") or {}
        _canonical_map(status.get("capacity"))
        _canonical_map(status.get("allocatable"))
    elif resource_key == "pods":
        spec = obj.get("spec") or {}
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for c in spec.get(key) or []:
                res = (c or {}).get("resources") or {}
                _canonical_map(res.get("requests"))
                _canonical_map(res.get("limits"))
        _canonical_map((spec.get("overhead")))
