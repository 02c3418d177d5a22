"""Exec through the shipped backend on a real runtime: the container's env, cwd and marker; counted and ended
with the container (the wire side is tests/e2e/test_exec.py)."""

from __future__ import annotations

import json

import pytest

from tools.procs import alive, wait_until
from vkcmd.kubeletapi.backend import NonZeroExit, NotFound


def test_an_execd_process_is_the_containers(serve, get, backend, admin_cert):
    body = backend.add_pod("exec", "host", {"c": ["sleep", "60"]})
    server = serve(backend, stats_ttl=0.0)

    def count():
        summary = json.loads(get(server, "/stats/summary", cert=admin_cert)[2])
        pod = next(p for p in summary["pods"] if p["podRef"]["name"] == "host")
        return pod["process_stats"]["process_count"]

    before = count()
    target = backend.exec_target("exec", "host", "c")
    started = target.start(["sh", "-c", "pwd; echo $VKCMD_RUN; exec sleep 60"], tty=False, stdin=False)
    try:
        cwd, marker = started.process.stdout.readline().decode().strip(), started.process.stdout.readline().strip()
        run = backend.runtime.runs()[backend.manager.run_key("exec", "host", "c")]
        assert marker.decode() == run.run_id  # the container's run marker
        leader = run.pid
        container_cwd = open(f"/proc/{leader}/cmdline", "rb").read().split(b"\0")
        assert cwd.encode() in container_cwd  # the working directory the run was launched in
        wait_until(lambda: count() > before, 15, "the exec'd sleep counted in the pod's processes")
        backend.manager.remove(body)  # the pod is gone from the API: its processes end
        wait_until(lambda: not alive(started.process.pid) or started.process.poll() is not None, 20,
                   "the exec'd sleep ended with its pod")
    finally:
        if started.process.poll() is None:
            started.process.kill()
        started.process.wait()


def test_exec_errors(backend):
    backend.add_pod("exec", "errors", {"c": ["sleep", "60"]})
    target = backend.exec_target("exec", "errors", "c")
    with pytest.raises(NonZeroExit) as missing:
        target.start(["no-such-command"], tty=False, stdin=False)
    assert missing.value.exit_code == 127
    with pytest.raises(NotFound, match='container not found \\("other"\\)'):
        backend.exec_target("exec", "errors", "other")
