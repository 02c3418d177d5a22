"""The layering of STYLE.md, checked: who may import what.

fsm is stdlib only; the runtime knows nothing of Kubernetes or HTTP; the
Kubernetes side neither spawns processes nor serves HTTP; HTTP handlers hold no
runtime internals. A violation names the file and the import.
"""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package (directory or module, relative to the repo) -> top-level imports it must not use
FORBIDDEN = {
    "fsm": {"vkcmd", "kubernetes", "psutil", "prometheus_client", "yaml", "tools"},
    "vkcmd/machines.py": {"kubernetes", "psutil", "prometheus_client", "vkcmd.kube", "vkcmd.runtime",
                          "vkcmd.kubeletapi"},
    "vkcmd/pods": {"kubernetes", "subprocess", "psutil", "vkcmd.kube", "vkcmd.kubeletapi", "http", "ssl"},
    "vkcmd/provider": {"kubernetes", "vkcmd.kube", "vkcmd.kubeletapi", "http", "ssl", "subprocess"},
    "vkcmd/runtime": {"kubernetes", "vkcmd.kube", "vkcmd.kubeletapi", "http", "ssl"},
    "vkcmd/kube": {"psutil", "subprocess", "vkcmd.runtime", "vkcmd.kubeletapi", "http.server"},
    "vkcmd/kubeletapi": {"subprocess", "kubernetes"},
}


def imports_of(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def files_of(target: Path):
    if target.is_file():
        return [target]
    return sorted(target.rglob("*.py")) if target.is_dir() else []


def violates(module: str, banned: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in banned)


@pytest.mark.parametrize("target", sorted(FORBIDDEN))
def test_layer_imports(target):
    banned = FORBIDDEN[target]
    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for path in files_of(REPO / target)
             for line, module in imports_of(path) if violates(module, banned)]
    assert not found, "\n".join(found)


def test_fsm_is_stdlib_only():
    stdlib = set(sys.stdlib_module_names) | {"fsm", "__future__"}
    strangers = [f"{path.relative_to(REPO)}:{line} imports {module}"
                 for path in files_of(REPO / "fsm")
                 for line, module in imports_of(path) if module.split(".")[0] not in stdlib]
    assert not strangers, "\n".join(strangers)
