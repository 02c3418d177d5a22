"""The workspace: validated names, directories created in place, removal that never leaves the root."""

import os
import shutil
import stat
import tempfile

import pytest

from vkcmd.pods import Workspace, WorkspaceError
from vkcmd.pods.paths import ensure_dir, relative_parts, remove_path


def test_paths_are_computed_without_creating_anything(tmp_path):
    ws = Workspace(tmp_path / "root")
    assert ws.pod_dir("ns", "p1") == str(tmp_path / "root" / "ns" / "p1")
    assert ws.container_dir("ns", "p1", "c1") == str(tmp_path / "root" / "ns" / "p1" / "containers" / "c1")
    assert ws.volume_dir("ns", "p1", "v") == str(tmp_path / "root" / "ns" / "p1" / "volumes" / "v")
    assert not (tmp_path / "root").exists()


def test_ensure_creates_pod_and_container_dirs(tmp_path):
    ws = Workspace(tmp_path / "root")
    path = ws.ensure_container("ns", "my.pod", "c1")
    assert os.path.isdir(path) and path == ws.container_dir("ns", "my.pod", "c1")
    assert ws.ensure_container("ns", "my.pod", "c1") == path  # idempotent
    assert ws.pods() == [("ns", "my.pod")]


def test_root_is_resolved(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    ws = Workspace(tmp_path / "link")
    assert ws.root == str(tmp_path / "real")


@pytest.mark.parametrize("namespace, pod, container", [
    ("..", "p", "c"), ("ns", "..", "c"), ("ns", "p", ".."), ("a/b", "p", "c"), ("ns", "p/q", "c"),
    ("ns", "p", "c/d"), ("NS", "p", "c"), ("", "p", "c"), ("ns", "", "c"), ("ns", "p", ""), ("-ns", "p", "c"),
    ("ns", "a..b", "c"), ("ns", ".p", "c"), ("ns.x", "p", "c"), ("ns", "p", "c.d"), ("x" * 64, "p", "c"),
    ("ns", "p", "x" * 64), ("ns", "p" * 254, "c"), (None, "p", "c"), ("ns", "p\0", "c"),
])
def test_invalid_names_are_refused(tmp_path, namespace, pod, container):
    ws = Workspace(tmp_path)
    with pytest.raises(WorkspaceError):
        ws.container_dir(namespace, pod, container)
    with pytest.raises(WorkspaceError):
        ws.ensure_container(namespace, pod, container)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path, parts", [
    ("a/b", ("a", "b")), ("/var/run/x", ("var", "run", "x")), ("./a//b/.", ("a", "b")), ("", ()), ("/", ()),
])
def test_relative_parts(path, parts):
    assert relative_parts(path, "p") == parts


@pytest.mark.parametrize("path", ["..", "a/../b", "/../x", "a/..", None, "a\0b"])
def test_relative_parts_refuses(path):
    with pytest.raises(WorkspaceError):
        relative_parts(path, "p")


def test_ensure_dir_refuses_symlinks_leading_out(tmp_path):
    base = tmp_path / "base"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    os.symlink(outside, base / "evil")
    with pytest.raises(WorkspaceError, match="symlink"):
        ensure_dir(str(base), ("evil", "x"))
    assert os.listdir(outside) == []
    (base / "inner").mkdir()
    os.symlink(base / "inner", base / "fine")
    assert os.path.isdir(ensure_dir(str(base), ("fine", "y")))
    assert (base / "inner" / "y").is_dir()
    (base / "file").write_text("x")
    with pytest.raises(WorkspaceError, match="not a directory"):
        ensure_dir(str(base), ("file", "z"))


def _populate(ws, namespace="ns", pod="p1"):
    cdir = ws.ensure_container(namespace, pod, "c1")
    os.makedirs(os.path.join(cdir, "ro", "deep"))
    with open(os.path.join(cdir, "ro", "deep", "f"), "w") as f:
        f.write("x")
    os.chmod(os.path.join(cdir, "ro", "deep", "f"), 0o400)
    os.chmod(os.path.join(cdir, "ro", "deep"), 0o500)
    os.chmod(os.path.join(cdir, "ro"), 0o000)
    return cdir


def test_remove_pod_removes_read_only_trees(tmp_path):
    ws = Workspace(tmp_path / "root")
    _populate(ws)
    ws.ensure_container("ns", "p2", "c1")
    assert ws.remove_pod("ns", "p1") is True
    assert not os.path.lexists(ws.pod_dir("ns", "p1"))
    assert os.path.isdir(ws.pod_dir("ns", "p2"))
    assert ws.remove_pod("ns", "p1") is False
    assert ws.remove_pod("other", "p1") is False


def test_remove_pod_never_follows_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    os.chmod(outside / "precious", 0o444)
    os.chmod(outside, 0o555)
    ws = Workspace(tmp_path / "root")
    cdir = ws.ensure_container("ns", "p1", "c1")
    os.symlink(outside, os.path.join(cdir, "dirlink"))
    os.symlink(outside / "precious", os.path.join(cdir, "filelink"))
    os.symlink(outside, os.path.join(ws.pod_dir("ns", "p1"), "volumes"))
    assert ws.remove_pod("ns", "p1")
    assert (outside / "precious").read_text() == "keep me"
    assert stat.S_IMODE(os.stat(outside / "precious").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o555  # never chmod'ed through the link
    os.chmod(outside, 0o755)


def _pod_dir_linked_outside(tmp_path):
    """A workspace whose pod ns/p1 is a symlink to a directory outside it: (workspace, that directory)."""
    outside = tmp_path / "outside"
    (outside / "containers").mkdir(parents=True)
    ws = Workspace(tmp_path / "root")
    os.makedirs(os.path.join(ws.root, "ns"))
    os.symlink(outside, os.path.join(ws.root, "ns", "p1"))
    return ws, outside


def _namespace_linked_outside(tmp_path):
    """A workspace whose namespace ns is a symlink to a directory outside it holding p1."""
    outside = tmp_path / "outside"
    (outside / "p1" / "containers").mkdir(parents=True)
    ws = Workspace(tmp_path / "root")
    os.makedirs(ws.root)
    os.symlink(outside, os.path.join(ws.root, "ns"))
    return ws, outside


def test_remove_pod_whose_directory_is_a_symlink_removes_only_the_link(tmp_path):
    ws, outside = _pod_dir_linked_outside(tmp_path)
    assert ws.remove_pod("ns", "p1")
    assert (outside / "containers").is_dir()
    assert not os.path.lexists(os.path.join(ws.root, "ns", "p1"))


def test_remove_pod_refuses_a_namespace_symlink_out_of_the_root(tmp_path):
    ws, outside = _namespace_linked_outside(tmp_path)
    with pytest.raises(WorkspaceError, match="refusing"):
        ws.remove_pod("ns", "p1")
    assert (outside / "p1" / "containers").is_dir()
    assert ws.pods() == []


def test_remove_pod_refuses_invalid_names(tmp_path):
    ws = Workspace(tmp_path / "root")
    victim = tmp_path / "victim"
    victim.mkdir()
    for namespace, pod in [("..", "victim"), ("ns", ".."), ("ns", "../../victim")]:
        with pytest.raises(WorkspaceError):
            ws.remove_pod(namespace, pod)
    assert victim.is_dir()


def test_remove_path_handles_files_links_and_missing(tmp_path):
    target = tmp_path / "t"
    target.write_text("x")
    os.symlink(target, tmp_path / "l")
    remove_path(str(tmp_path / "l"))
    assert target.exists() and not os.path.lexists(tmp_path / "l")
    remove_path(str(target))
    assert not target.exists()
    remove_path(str(tmp_path / "nothing"), missing_ok=True)
    with pytest.raises(FileNotFoundError):
        remove_path(str(tmp_path / "nothing"))


def test_remove_pod_as_an_unprivileged_user():
    """Modes really deny access when not root: a 000 directory and read-only files still go."""
    top = tempfile.mkdtemp(prefix="vkcmd-ws-")
    try:
        os.chmod(top, 0o777)
        ws = Workspace(os.path.join(top, "root"))
        if os.geteuid() == 0:
            os.makedirs(ws.root)
            os.chown(ws.root, 65534, 65534)
            pid = os.fork()
            if pid == 0:  # child: drop privileges, build and remove the tree
                code = 1
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    _populate(ws)
                    code = 0 if ws.remove_pod("ns", "p1") and not os.path.lexists(ws.pod_dir("ns", "p1")) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        else:
            _populate(ws)
            assert ws.remove_pod("ns", "p1")
        assert not os.path.lexists(ws.pod_dir("ns", "p1"))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_detach_pod_moves_the_tree_out_in_one_rename_and_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    ws = Workspace(tmp_path / "root")
    cdir = ws.ensure_container("ns", "p1", "c1")
    with open(os.path.join(cdir, "stdout"), "w") as handle:
        handle.write("out")
    os.symlink(outside, os.path.join(cdir, "dirlink"))
    inode = os.stat(ws.pod_dir("ns", "p1")).st_ino
    moved = ws.detach_pod("ns", "p1")
    assert not os.path.lexists(ws.pod_dir("ns", "p1"))
    assert os.path.dirname(moved) == os.path.join(ws.root, ".vkcmd-removed") and os.stat(moved).st_ino == inode
    assert ws.pods() == [] and ws.removed() == [moved]
    remove_path(moved)
    assert ws.removed() == [] and (outside / "precious").read_text() == "keep me"
    assert ws.detach_pod("ns", "p1") is None and ws.detach_pod("other", "p1") is None


def test_detach_pod_of_a_symlinked_pod_directory_moves_only_the_link(tmp_path):
    ws, outside = _pod_dir_linked_outside(tmp_path)
    moved = ws.detach_pod("ns", "p1")
    assert os.path.islink(moved)
    remove_path(moved)
    assert (outside / "containers").is_dir()


def test_detach_pod_refuses_a_namespace_symlink_out_of_the_root(tmp_path):
    ws, outside = _namespace_linked_outside(tmp_path)
    with pytest.raises(WorkspaceError):
        ws.detach_pod("ns", "p1")
    assert (outside / "p1" / "containers").is_dir()
