"""What a container plants in its own directory never makes vkcmd write elsewhere, nor wedges it.

A run runs as vkcmd's user, so it can put a symlink (to a file outside the pod), a directory or a
FIFO at any name vkcmd writes there: ``pgid`` and its temporary sibling, ``stdout``/``stderr``,
their ``.previous`` rotation, the log index files. The next launch and rotation must leave the
outside file alone, and must either cope (the obstacle moved aside) or fail with a typed error.
"""

from __future__ import annotations

import os
import threading

import pytest

from vkcmd.runtime import LaunchError
from vkcmd.containerlogs import LogIndexer
from vkcmd.containerlogs.indexfile import index_name
from vkcmd.runtime.safefs import DISPLACED_PREFIX

PRECIOUS = "precious\n"


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside.txt"
    path.write_text(PRECIOUS)
    return path


def _run(rt, key, script="echo out; echo err >&2"):
    rt.sh(key, script)
    report = rt.exit()
    assert report.exit_code == 0, report
    return report


# names a planted link can take: the old pgid temp name was <pgid>.tmp.<vkcmd pid>.<thread id>
LINK_NAMES = ["pgid", "stdout", "stderr", "pgid.tmp.{pid}.{tid}", "stdout.previous", "stderr.previous",
              index_name("stdout"), index_name("stdout.previous"), index_name("stdout") + ".tmp",
              index_name("stderr.previous")]


@pytest.mark.parametrize("name", LINK_NAMES)
def test_a_planted_symlink_is_never_written_through(rt, outside, name):
    name = name.format(pid=os.getpid(), tid=threading.get_native_id())
    d = rt.cdir("p_c")
    indexer = LogIndexer()
    _run(rt, "p/c")
    indexer.watch(str(d))
    indexer.unwatch(str(d))
    (d / name).unlink(missing_ok=True)
    (d / name).symlink_to(outside)           # what the container left behind
    indexer.rotate(str(d))                    # the restart: the run before becomes "previous"
    _run(rt, "p/c", "echo again")
    indexer.watch(str(d))
    indexer.flush(str(d))
    indexer.unwatch(str(d))
    indexer.rotate(str(d))
    assert outside.read_text() == PRECIOUS
    assert not outside.is_symlink() and outside.stat().st_nlink == 1
    assert (d / "pgid").is_file() and not (d / "pgid").is_symlink()
    assert (d / "stdout.previous").read_text() == "again\n"


def test_output_goes_to_a_fresh_file_in_place_of_a_planted_link(rt, outside):
    d = rt.cdir("p_c")
    (d / "stdout").symlink_to(outside)
    _run(rt, "p/c", "echo fresh")
    assert outside.read_text() == PRECIOUS
    assert not (d / "stdout").is_symlink() and (d / "stdout").read_text() == "fresh\n"
    displaced = [p for p in d.iterdir() if p.name.startswith(DISPLACED_PREFIX)]
    assert len(displaced) == 1 and displaced[0].is_symlink()


def test_a_container_dir_reached_through_a_symlink_is_refused(rt, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d = rt.cdir("p_c")
    d.rmdir()
    d.symlink_to(elsewhere)                   # the container swapped its directory for a link
    with pytest.raises(LaunchError, match="symbolic link"):
        rt.sh("p/c", "echo x")
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(OSError):
        LogIndexer().rotate(str(d))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["pgid", "stdout", "stderr", "stdout.previous", "stderr.previous",
                                  index_name("stdout"), index_name("stdout.previous")])
def test_a_directory_where_a_file_belongs_is_moved_aside(rt, name):
    d = rt.cdir("p_c")
    _run(rt, "p/c", "echo first")
    indexer = LogIndexer()
    indexer.flush(str(d))
    (d / name).unlink(missing_ok=True)
    (d / name).mkdir()
    (d / name / "inside").write_text("x")
    indexer.rotate(str(d))
    _run(rt, "p/c", "echo second")
    indexer.flush(str(d))
    assert (d / "pgid").is_file()
    assert (d / "stdout").read_text() == "second\n"
    if name not in ("stdout", "stdout.previous"):
        assert (d / "stdout.previous").read_text() == "first\n"
    # kept inside the container directory (as the previous run's file, or moved aside), not deleted
    assert [p.name for p in d.iterdir() if p.is_dir() and (p / "inside").read_text() == "x"]


def test_a_fifo_at_stdout_neither_blocks_nor_receives_the_output(rt):
    d = rt.cdir("p_c")
    os.mkfifo(d / "stdout")
    done = threading.Event()

    def launch():
        try:
            _run(rt, "p/c", "echo through")
        finally:
            done.set()

    thread = threading.Thread(target=launch, daemon=True)
    thread.start()
    if not done.wait(10):
        with open(d / "stdout", "rb"):        # unblock the launch so the test can end
            pass
        thread.join(10)
        pytest.fail("launch blocked on a FIFO planted at stdout")
    thread.join()
    assert (d / "stdout").is_file() and (d / "stdout").read_text() == "through\n"

