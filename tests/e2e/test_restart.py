"""vkcmd killed with SIGKILL and started again: runs re-adopted, exits that happened meanwhile reported."""

from __future__ import annotations

import time

from tests.e2e.node import Node, container_state, pod_manifest, wait_for


def test_restart_adopts_runs_and_reports_exits_from_while_down(control_plane, tmp_path, namespace):
    node = Node(control_plane, tmp_path, name="vk-restart").start()
    try:
        node.create(pod_manifest("long", ["sleep", "1000"]), namespace)
        node.create(pod_manifest("short", ["sh", "-c", "sleep 2; exit 3"]), namespace)
        node.create(pod_manifest("orphan", ["sleep", "1000"]), namespace)
        for name in ("long", "short", "orphan"):
            node.wait_phase(name, phases=("Running",), namespace=namespace)
        long_before = container_state(node.pod("long", namespace))["containerID"]
        orphan_dir = node.home / namespace / "orphan"
        orphan_pgid = int((orphan_dir / "containers" / "c" / "pgid").read_text())
        node.kill_hard()
        node.delete("orphan", namespace, grace=0)  # deleted while vkcmd is down
        time.sleep(2.5)  # "short" ends meanwhile
        node.start()
        short = node.wait_phase("short", namespace=namespace)
        terminated = container_state(short)["state"]["terminated"]
        assert (short["status"]["phase"], terminated["exitCode"]) == ("Failed", 3)
        long_pod = node.pod("long", namespace)
        assert long_pod["status"]["phase"] == "Running"
        assert container_state(long_pod)["containerID"] == long_before
        assert container_state(long_pod)["restartCount"] == 0
        pgid = int(long_before.removeprefix("vkcmd://"))
        assert _group_members(pgid) and len([p for p in _group_members(pgid) if _comm(p) == "sleep"]) == 1
        wait_for(lambda: not _group_members(orphan_pgid), what="orphan's processes killed")
        wait_for(lambda: not orphan_dir.exists(), what="orphan's workspace removed")
        node.delete("long", namespace)
        node.wait_gone("long", namespace)
        assert not _group_members(pgid)
    finally:
        assert node.stop() == 0, node.log()


def _group_members(pgid: int) -> list[int]:
    import os

    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _comm(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""
