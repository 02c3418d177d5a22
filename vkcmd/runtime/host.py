"""Facts about this host that the node reports: CPUs, memory, workspace storage, OS, kernel, boot id.

Read once at start-up by the app and handed to the Kubernetes side, which must
not look at the host itself.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import psutil

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    cpus: int
    memory_bytes: int
    storage_bytes: int  # size of the filesystem holding the workspace root (0: unknown)
    os: str  # GOOS-style: linux
    arch: str  # GOARCH-style: amd64, arm64
    kernel: str
    os_image: str
    machine_id: str
    boot_id: str


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def filesystem_bytes(path: str | None) -> int:
    """Size of the filesystem holding ``path`` (what the kubelet reports as ephemeral-storage); 0 if unknown."""
    if not path:
        return 0
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_blocks * st.f_frsize


def host_facts(workspace_root: str | None = None) -> HostFacts:
    machine = platform.machine()
    return HostFacts(
        hostname=platform.node(),
        cpus=len(os.sched_getaffinity(0)) or psutil.cpu_count() or 1,
        memory_bytes=psutil.virtual_memory().total,
        storage_bytes=filesystem_bytes(workspace_root),
        os=platform.system().lower(),
        arch=_ARCH.get(machine, machine),
        kernel=platform.release(),
        os_image=_os_image(),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
    )
