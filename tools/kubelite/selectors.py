"""Label and field selectors for kubelite, with the syntax and semantics of apimachinery.

Owns parsing (`parse_label_selector`, `parse_field_selector`), the
`metav1.LabelSelector` form (`label_selector_from_dict`) and matching against
labels or whole objects.  Pure: no HTTP, no storage.  Bad syntax raises
`SelectorError`, which the server answers with 400 Bad Request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = [
    "SelectorError",
    "Requirement",
    "LabelSelector",
    "FieldSelector",
    "FieldTerm",
    "parse_label_selector",
    "label_selector_from_dict",
    "parse_field_selector",
    "check_field_selector",
    "field_value",
]


class SelectorError(ValueError):
    """A selector that does not parse or names an unsupported field."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------
# label selectors
# --------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_NAME_RE = re.compile(f"^{_NAME}$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")

EXISTS, DOES_NOT_EXIST = "exists", "!"
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN, GT, LT = "in", "notin", "gt", "lt"


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN_RE.match(prefix)):
        raise SelectorError(f"invalid label key {key!r}: prefix part must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        raise SelectorError(
            f"invalid label key {key!r}: name part must consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character")


def _check_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        raise SelectorError(
            f"invalid label value {value!r}: must be 63 characters or less and consist of "
            "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: `key op values`."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_key(self.key)
        object.__setattr__(self, "values", tuple(self.values))
        if self.op in (IN, NOT_IN):
            object.__setattr__(self, "values", tuple(sorted(set(self.values))))
            if not self.values:
                raise SelectorError(f"for 'in', 'notin' operators, values set can't be empty ({self.key})")
        elif self.op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(self.values) != 1:
                raise SelectorError(f"exact-match compatibility requires one single value ({self.key})")
        elif self.op in (EXISTS, DOES_NOT_EXIST):
            if self.values:
                raise SelectorError(f"values set must be empty for exists and does not exist ({self.key})")
        elif self.op in (GT, LT):
            if len(self.values) != 1 or not _INT_RE.match(self.values[0]):
                raise SelectorError(f"for 'Gt', 'Lt' operators, exactly one integer value is required ({self.key})")
            return
        else:
            raise SelectorError(f"operator {self.op!r} is not recognized")
        for value in self.values:
            _check_value(value)

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in (EQUALS, DOUBLE_EQUALS, IN):
            return present and value in self.values
        if self.op in (NOT_EQUALS, NOT_IN):
            return not present or value not in self.values
        if self.op == EXISTS:
            return present
        if self.op == DOES_NOT_EXIST:
            return not present
        if not present or not isinstance(value, str) or not _INT_RE.match(value):
            return False
        wanted = int(self.values[0])
        return int(value) > wanted if self.op == GT else int(value) < wanted

    def __str__(self) -> str:
        if self.op == EXISTS:
            return self.key
        if self.op == DOES_NOT_EXIST:
            return "!" + self.key
        if self.op in (IN, NOT_IN):
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        if self.op == GT:
            return f"{self.key}>{self.values[0]}"
        if self.op == LT:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


class LabelSelector:
    """A conjunction of requirements; `nothing=True` is the selector that matches no object."""

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements = tuple(sorted(requirements, key=lambda r: r.key))
        self.nothing = nothing

    def matches(self, labels: dict | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector matches every object."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r}{', nothing' if self.nothing else ''})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LabelSelector) and other.nothing == self.nothing
                and other.requirements == self.requirements)

    def __hash__(self) -> int:
        return hash((self.requirements, self.nothing))


_SPECIAL = set("!=,()<>")


def _tokens(text: str) -> list[str]:
    """Split a label selector into identifiers and the operators ! != = == , ( ) < >."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "!=" and i + 1 < n and text[i + 1] == "=":
            out.append(ch + "=")
            i += 2
        elif ch in _SPECIAL:
            out.append(ch)
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


class _LabelParser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def fail(self, found: str | None, expected: str) -> SelectorError:
        shown = "end of string" if found is None else repr(found)
        return SelectorError(f"found {shown}, expected: {expected}")

    def identifier(self, expected: str) -> str:
        token = self.take()
        if token is None or token in _SPECIAL or token in ("!=", "=="):
            raise self.fail(token, expected)
        return token

    def parse(self) -> LabelSelector:
        requirements = []
        if self.peek() is None:
            return LabelSelector()
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token is None:
                return LabelSelector(requirements)
            if token != ",":
                raise self.fail(token, "','")
            if self.peek() is None:
                raise self.fail(None, "identifier")

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.identifier("identifier after '!'"), DOES_NOT_EXIST)
        key = self.identifier("identifier")
        op = self.peek()
        if op is None or op == ",":
            return Requirement(key, EXISTS)
        self.take()
        if op in ("=", "==", "!="):
            value = self.peek()
            if value is None or value == ",":
                return Requirement(key, op, ("",))
            return Requirement(key, op, (self.identifier("value"),))
        if op in ("<", ">"):
            return Requirement(key, LT if op == "<" else GT, (self.identifier("integer value"),))
        if op in (IN, NOT_IN):
            return Requirement(key, op, tuple(self.value_set()))
        raise self.fail(op, "'=', '!=', '==', 'in', 'notin', '<', '>'")

    def value_set(self) -> list[str]:
        token = self.take()
        if token != "(":
            raise self.fail(token, "'('")
        values: list[str] = []
        want_value = True
        while True:
            token = self.take()
            if token is None:
                raise self.fail(None, "')'")
            if token == ")":
                if want_value and values:  # trailing comma: `(a,)` carries ""
                    values.append("")
                return values
            if token == ",":
                if want_value:
                    values.append("")
                want_value = True
                continue
            if not want_value or token in _SPECIAL or token in ("!=", "=="):
                raise self.fail(token, "',' or ')'")
            values.append(token)
            want_value = False


def parse_label_selector(s: str | None) -> LabelSelector:
    """Parse the `labelSelector` query string syntax; empty matches everything."""
    return _LabelParser(s or "").parse()


_EXPRESSION_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_dict(sel: dict | None) -> LabelSelector:
    """Convert a metav1.LabelSelector; None selects nothing, {} selects everything."""
    if sel is None:
        return LabelSelector(nothing=True)
    if not isinstance(sel, dict):
        raise SelectorError("label selector must be an object")
    requirements = []
    for key, value in (sel.get("matchLabels") or {}).items():
        requirements.append(Requirement(key, EQUALS, (str(value),)))
    for expr in sel.get("matchExpressions") or []:
        op = _EXPRESSION_OPS.get(expr.get("operator"))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        requirements.append(Requirement(expr.get("key") or "", op, tuple(expr.get("values") or ())))
    return LabelSelector(requirements)


# --------------------------------------------------------------------------
# field selectors
# --------------------------------------------------------------------------

# Fields each built-in resource serves beyond metadata.name/metadata.namespace.
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
        "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
        "status.podIP", "status.podIPs", "status.nominatedNodeName"}),
    "events": frozenset({
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
        "involvedObject.uid", "involvedObject.apiVersion",
        "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
        "reportingComponent", "source", "type"}),
    "secrets": frozenset({"type"}),
    "nodes": frozenset({"spec.unschedulable"}),
    "namespaces": frozenset({"status.phase"}),
    "replicasets": frozenset({"status.replicas"}),
    "jobs": frozenset({"status.successful"}),
    "services": frozenset({"spec.clusterIP", "spec.type"}),
}

# Field-selector names that do not follow the JSON path of the object.
_ALIASES = {"source": "source.component"}
# Boolean fields that read "false" when absent (Go zero value).
_BOOL_FIELDS = frozenset({"spec.unschedulable", "spec.hostNetwork"})


def field_value(obj: dict, field: str) -> str:
    """The string a field selector compares for `field` of `obj` ('' when absent)."""
    node: Any = obj
    for part in _ALIASES.get(field, field).split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return "false" if field in _BOOL_FIELDS else ""
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, list):  # status.podIPs: the first entry, as upstream indexes it
        first = node[0] if node else None
        return str(first.get("ip", "")) if isinstance(first, dict) else ""
    return str(node)


@dataclass(frozen=True)
class FieldTerm:
    """`field op value` with op one of '=', '==', '!='."""

    field: str
    op: str
    value: str

    def matches(self, obj: dict) -> bool:
        equal = field_value(obj, self.field) == self.value
        return not equal if self.op == "!=" else equal

    def __str__(self) -> str:
        return f"{self.field}{self.op}{_escape(self.value)}"


class FieldSelector:
    """A conjunction of field terms; empty matches every object."""

    def __init__(self, terms: Iterable[FieldTerm] = ()):
        self.terms = tuple(terms)

    def matches(self, obj: dict) -> bool:
        return all(t.matches(obj) for t in self.terms)

    def fields(self) -> list[str]:
        return [t.field for t in self.terms]

    def requires(self, field: str) -> str | None:
        """The value an `=`/`==` term demands of `field`, if any (for indexed lookups)."""
        for t in self.terms:
            if t.field == field and t.op != "!=":
                return t.value
        return None

    def empty(self) -> bool:
        return not self.terms

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector value {value!r}: bad escape sequence")
            out.append(value[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise SelectorError(f"invalid field selector value {value!r}: unescaped {ch!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str]:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
        i += 1
    raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")


def parse_field_selector(s: str | None) -> FieldSelector:
    """Parse the `fieldSelector` query syntax (`a=b,c!=d`, `\\` escapes `,` `=` `\\`)."""
    text = (s or "").strip()
    if not text:
        return FieldSelector()
    terms = []
    for raw in _split_unescaped(text, ","):
        raw = raw.strip()
        if not raw:
            raise SelectorError(f"invalid selector: {text!r}; empty term")
        field, op, value = _split_term(raw)
        field = field.strip()
        if not field:
            raise SelectorError(f"invalid selector: {raw!r}; field name is empty")
        terms.append(FieldTerm(field, op, _unescape(value.strip())))
    return FieldSelector(terms)


def check_field_selector(selector: FieldSelector, resource: str) -> None:
    """Raise `SelectorError("field label not supported: x")` as the API server does."""
    allowed = SUPPORTED_FIELDS.get(resource, frozenset())
    for field in selector.fields():
        if field not in ("metadata.name", "metadata.namespace") and field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
