"""Links a container planted in its pod's directory: re-staging and removal never write through them.

A container runs as vkcmd's user, so between two runs it can replace any entry of its pod directory
by a symlink to a file or directory outside. Re-staging the container, and removing the pod, must
leave what is outside untouched (replaced links, or a typed error: never a write through them).
"""

from __future__ import annotations

import os

import pytest

from vkcmd.pods import ConfigError, StaticResolver

from .conftest import make_pod
from .test_volumes import cm, container

PRECIOUS = b"precious\n"


@pytest.fixture
def outside(tmp_path):
    """A directory outside the workspace with one file in it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "f").write_bytes(PRECIOUS)
    return path


def untouched(outside) -> bool:
    return sorted(os.listdir(outside)) == ["f"] and (outside / "f").read_bytes() == PRECIOUS


def pod_with_everything():
    mounts = [{"name": "cfg", "mountPath": "conf"}, {"name": "scratch", "mountPath": "scratch"},
              {"name": "cfg", "mountPath": "one", "subPath": "a"},
              {"name": "scratch", "mountPath": "sub", "subPath": "deep/er"}]
    volumes = [{"name": "cfg", "configMap": {"name": "app"}}, {"name": "scratch", "emptyDir": {}}]
    return make_pod([container(mounts)], volumes)


RESOLVER = StaticResolver([cm("app", {"a": "A", "b": "B"})])


@pytest.mark.parametrize("where", ["containers/c1/conf", "containers/c1/one", "containers/c1/scratch",
                                   "containers/c1/sub", "volumes/cfg", "volumes/scratch/deep/er",
                                   "volumes/scratch/deep", "volumes/cfg/a"])
def test_restaging_never_writes_through_a_planted_link(stage, workspace, outside, where):
    staged = stage(pod_with_everything(), RESOLVER)
    pod_dir = workspace.pod_dir("ns1", "p1")
    target = os.path.join(pod_dir, where)
    if os.path.isdir(target) and not os.path.islink(target):
        os.rename(target, target + ".moved")
    elif os.path.lexists(target):
        os.unlink(target)
    os.symlink(outside if where != "volumes/cfg/a" else outside / "f", target)
    try:
        again = stage(pod_with_everything(), RESOLVER)
    except ConfigError as error:                        # refused is fine, with a reason
        assert "symlink" in error.message or "outside" in error.message or "leads out" in error.message
    else:
        with open(os.path.join(again.container_dir, "conf", "a"), "rb") as f:
            assert f.read() == b"A"
    assert untouched(outside)
    assert staged.container_dir == workspace.container_dir("ns1", "p1", "c1")


def test_removing_the_pod_never_follows_a_planted_link(stage, workspace, outside, tmp_path):
    stage(pod_with_everything(), RESOLVER)
    pod_dir = workspace.pod_dir("ns1", "p1")
    for name in ("containers/c1/stdout.previous", "containers/c1/pgid", "volumes/scratch/deep/er/link",
                 "containers/c1/scratch-link", "volumes/x", "containers/c2"):
        path = os.path.join(pod_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(outside, path)
    os.symlink(outside / "f", os.path.join(pod_dir, "containers", "c1", "stdout"))
    os.chmod(os.path.join(pod_dir, "volumes", "scratch", "deep"), 0o500)   # read-only, made writable to remove
    assert workspace.remove_pod("ns1", "p1")
    assert not os.path.lexists(pod_dir)
    assert untouched(outside)
