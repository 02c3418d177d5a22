"""The layering of STYLE.md, checked as an order: a module may import only its own layer and lower ones.

fsm < machines < {pods, runtime} < provider < {kube, kubeletapi} < serving < app, over a
base of small utilities. A second table bans third-party and stdlib modules where a
layer must not know them (fsm is stdlib only; the runtime knows nothing of
Kubernetes or HTTP). A violation names the file, the line and the import.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# One ordered table, lowest first: each row is one layer (its members may import one another).
LAYERS: list[set[str]] = [
    {"fsm"},
    {"vkcmd", "vkcmd.timefmt", "vkcmd.backoff", "vkcmd.workqueue", "vkcmd.logfmt", "vkcmd.certfacts", "vkcmd.keymaker"},  # utilities
    {"vkcmd.machines"},
    {"vkcmd.pods", "vkcmd.runtime", "vkcmd.containerlogs", "vkcmd.probing"},
    {"vkcmd.provider"},
    {"vkcmd.kube", "vkcmd.kubeletapi"},
    {"vkcmd.serving"},
    {"vkcmd.app", "vkcmd.config", "vkcmd.slurm", "vkcmd.__main__"},
]
# Members of one layer that must still not know each other.
APART = [("vkcmd.pods", "vkcmd.runtime"), ("vkcmd.kube", "vkcmd.kubeletapi")]
# Known violations being removed elsewhere (issue 10); each must still exist, so that a fixed one leaves the list.
PENDING: set[tuple[str, str]] = set()

# Third-party and stdlib modules a layer must not use.
BANNED = {
    "fsm": {"vkcmd", "kubernetes", "psutil", "prometheus_client", "yaml", "tools"},
    "vkcmd.machines": {"kubernetes", "psutil", "prometheus_client"},
    "vkcmd.pods": {"kubernetes", "subprocess", "psutil", "http", "ssl"},
    "vkcmd.provider": {"kubernetes", "http", "ssl", "subprocess"},
    "vkcmd.runtime": {"kubernetes", "http", "ssl"},
    "vkcmd.kube": {"psutil", "subprocess", "http.server", "kubernetes"},
    "vkcmd.kubeletapi": {"subprocess", "kubernetes"},
    "vkcmd.probing": {"kubernetes", "subprocess", "psutil"},
}

# Modules allowed one banned import, with the reason.
ALLOWED = {
    ("vkcmd.kube.credentials", "subprocess"),  # an exec credential plugin is a program the API edge must run
}
# Not imported by any module of vkcmd: the package costs ~19 MiB of RSS per node and vkcmd speaks raw JSON.
NEVER_IMPORTED = ("kubernetes", "requests", "oauthlib", "requests_oauthlib", "google.auth", "grpc")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, the table entry) of the longest entry that ``module`` is or is inside of."""
    best = None
    for rank, layer in enumerate(LAYERS):
        for entry in layer:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (rank, entry)
    return best


def imports_of(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def sources():
    return sorted(list((REPO / "fsm").rglob("*.py")) + list((REPO / "vkcmd").rglob("*.py")))


def upward_imports():
    found = []
    for path in sources():
        own = layer_of(module_name(path))
        for line, module in imports_of(path):
            if not (module == "fsm" or module.startswith(("fsm.", "vkcmd"))):
                continue
            target = layer_of(module)
            apart = own and target and any({own[1], target[1]} == set(pair) for pair in APART)
            if target is not None and own is not None and (target[0] > own[0] or apart):
                found.append((str(path.relative_to(REPO)), line, module))
    return found


def test_every_module_has_a_place_in_the_table():
    strays = [str(p.relative_to(REPO)) for p in sources() if layer_of(module_name(p)) is None]
    assert not strays, f"place these in LAYERS: {strays}"


def test_no_module_imports_a_higher_layer():
    found = [f"{f}:{line} imports {module}" for f, line, module in upward_imports() if (f, module) not in PENDING]
    assert not found, "\n".join(found)


def test_pending_exceptions_still_exist():
    present = {(f, module) for f, _, module in upward_imports()}
    assert PENDING <= present, f"fixed, remove from PENDING: {PENDING - present}"


def test_the_table_catches_an_upward_import():
    """The rule itself: runtime importing provider, or kube importing provider's upper neighbour, is refused."""
    assert layer_of("vkcmd.runtime.spawn")[0] < layer_of("vkcmd.provider.manager")[0]
    assert layer_of("vkcmd.kube.node")[0] < layer_of("vkcmd.serving")[0]
    assert layer_of("vkcmd.provider")[0] < layer_of("vkcmd.kube.objects")[0]
    assert layer_of("fsm.machine")[0] == 0


@pytest.mark.parametrize("package", sorted(BANNED))
def test_banned_modules(package):
    banned = BANNED[package]
    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for path in sources() if layer_of(module_name(path)) and layer_of(module_name(path))[1] == package
             for line, module in imports_of(path)
             if any(module == name or module.startswith(name + ".") for name in banned)
             and (module_name(path), module.split(".")[0]) not in ALLOWED]
    assert not found, "\n".join(found)


def test_allowed_exceptions_are_still_used():
    used = {(module_name(path), module.split(".")[0]) for path in sources() for _, module in imports_of(path)}
    assert ALLOWED <= used, f"no longer needed, remove from ALLOWED: {ALLOWED - used}"


def test_no_vkcmd_module_imports_the_kubernetes_package():
    found = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for path in sources() for line, module in imports_of(path) if module.split(".")[0] == "kubernetes"]
    assert not found, "\n".join(found)


def test_a_node_starts_without_the_kubernetes_package():
    """What ``python -m vkcmd`` loads before its first pod: none of NEVER_IMPORTED (grpc: at the first gRPC probe)."""
    code = ("import sys, vkcmd.__main__, vkcmd.app; "
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith({NEVER_IMPORTED!r}))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"imported at start-up: {result.stdout.strip()}"


def test_fsm_is_stdlib_only():
    stdlib = set(sys.stdlib_module_names) | {"fsm", "__future__"}
    strangers = [f"{path.relative_to(REPO)}:{line} imports {module}"
                 for path in (REPO / "fsm").rglob("*.py")
                 for line, module in imports_of(path) if module.split(".")[0] not in stdlib]
    assert not strangers, "\n".join(strangers)
