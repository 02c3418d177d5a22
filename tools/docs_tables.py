"""Generate the README's configuration table and the state-machine diagrams from the code.

``python -m tools.docs_tables`` rewrites the generated blocks of README.md in place;
``--check`` exits 1 when they are stale (a test runs it), so docs cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fsm import to_mermaid
from vkcmd.config import SETTINGS
from vkcmd.machines import CONTAINER, NODE, POD

README = Path(__file__).resolve().parents[1] / "README.md"


def config_table() -> str:
    rows = ["| variable | flag | meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        env = f"`{setting.env}`" if setting.env else ""
        flags = ", ".join(f"`{flag}`" for flag in setting.flags)
        rows.append(f"| {env} | {flags} | {setting.help.replace('<', '&lt;')} |")
    return "\n".join(rows)


def machines() -> str:
    blocks = []
    for definition in (NODE, POD, CONTAINER):
        blocks.append(f"{definition.kind}:\n\n```mermaid\n{to_mermaid(definition)}```")
    return "\n\n".join(blocks)


GENERATED = {"config-table": config_table, "machines": machines}


def render(text: str) -> str:
    for name, make in GENERATED.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("README.md generated blocks are stale: run python -m tools.docs_tables", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
