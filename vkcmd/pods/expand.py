"""Variable expansion in command, args and env values: the kubelet's ``$(VAR)`` plus the seed's forms.

One left-to-right pass, so an expanded value is never expanded again:

- ``$$`` is a literal ``$`` (the escape; ``$$(VAR)`` gives ``$(VAR)``);
- ``$(VAR)`` is replaced from the kubelet context; unresolved, it stays as it is
  (the kubelet's ``expansion`` package, exactly: an unterminated ``$(`` and a
  ``$`` before any other character are kept);
- ``$VAR`` and ``${VAR}`` (``VAR`` a C identifier) are replaced from the seed
  context when one is given; unresolved, they stay as they are, so a shell named
  in ``command`` still sees them (the seed's ``os.Expand`` blanked them instead);
- a leading ``~`` (alone or before ``/``) becomes the vkcmd user's home.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Lookup = Callable[[str], "str | None"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(text: str, refs: Lookup, names: Lookup | None = None) -> str:
    """``text`` with ``$(VAR)`` looked up in ``refs`` and, when ``names`` is given, ``$VAR``/``${VAR}`` in it.

    A lookup returns ``None`` for an undefined name (the reference is kept);
    ``""`` is a defined, empty value.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0 or j == n - 1:  # no operator, or a trailing one: the rest is literal
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "(":
            close = text.find(")", j + 2)
            if close < 0:  # incomplete reference: keep "$(" and go on after it
                out.append("$(")
                i = j + 2
            else:
                value = refs(text[j + 2:close])
                out.append(text[j:close + 1] if value is None else value)
                i = close + 1
        elif names is not None and nxt == "{":
            close = text.find("}", j + 2)
            name = text[j + 2:close] if close >= 0 else ""
            value = names(name) if close >= 0 and _IDENTIFIER.fullmatch(name) else None
            if value is None:  # keep the "$"; "{...}" is copied as ordinary text
                out.append("$")
                i = j + 1
            else:
                out.append(value)
                i = close + 1
        elif names is not None and _IDENTIFIER.match(nxt):
            name = _IDENTIFIER.match(text, j + 1).group()
            value = names(name)
            out.append("$" + name if value is None else value)
            i = j + 1 + len(name)
        else:  # the operator before any other character is kept with it
            out.append(text[j:j + 2])
            i = j + 2
    return "".join(out)


def kubelet_expand(text: str, context: Mapping[str, str]) -> str:
    """Exactly the kubelet's expansion of ``$(VAR)`` from ``context`` (no seed forms)."""
    return expand(text, context.get)


def _tilde(text: str, home: str, rest: Callable[[str], str]) -> str:
    if text == "~" or text.startswith("~/"):
        return home + rest(text[1:])
    return rest(text)


def expand_arg(text: str, env: Mapping[str, str], home: str) -> str:
    """One element of command or args: ``$(VAR)``, ``$VAR``, ``${VAR}`` from ``env``; ``$HOME``, ``~`` to ``home``."""

    def names(name: str) -> str | None:
        return home if name == "HOME" else env.get(name)

    return _tilde(text, home, lambda s: expand(s, env.get, names))


def expand_env_value(text: str, env: Mapping[str, str], home: str) -> str:
    """An env ``value``: ``$(VAR)`` from the variables defined so far; ``$HOME``, ``${HOME}`` and ``~`` to ``home``.

    ``~`` is expanded at the start and after each ``:`` (``PATH``-like lists);
    no other ``$VAR`` form is expanded in env values (the seed did not either).
    """

    def names(name: str) -> str | None:
        return home if name == "HOME" else None

    return ":".join(_tilde(part, home, lambda s: expand(s, env.get, names)) for part in text.split(":"))
