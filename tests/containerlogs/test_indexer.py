"""The log indexer on real files: stamping, catch-up, rotation, truncation, removal, many containers.

Writers are this process (files opened for append, as the runtime hands them
to containers) or real bash processes; the indexer is a real thread on real
inotify. Every indexer is stopped and every process reaped by the fixtures.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from vkcmd.containerlogs import LogIndexer
from vkcmd.containerlogs.indexfile import HEADER, MAGIC, RECORD, index_name


def records(directory, name="stdout"):
    """(header inode, [(end, time_ns)]) of an index file."""
    with open(os.path.join(directory, index_name(name)), "rb") as f:
        data = f.read()
    magic, ino = HEADER.unpack_from(data)
    assert magic == MAGIC
    body = data[HEADER.size:]
    return ino, [RECORD.unpack_from(body, i) for i in range(0, len(body) - len(body) % RECORD.size, RECORD.size)]


def covered(directory, name="stdout"):
    try:
        return records(directory, name)[1][-1][0]
    except (FileNotFoundError, IndexError):
        return 0


def wait_until(predicate, timeout=3.0, interval=0.002):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def remove_tree(path):
    """rmtree of a directory the indexer still watches: it may add an index while the tree goes (retry)."""
    for _ in range(20):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno != errno.ENOTEMPTY:
                raise
    raise AssertionError(f"could not remove {path}")


def append(directory, name, data: bytes):
    with open(os.path.join(directory, name), "ab") as f:
        f.write(data)


@pytest.fixture
def container_dir(tmp_path):
    path = tmp_path / "ns" / "pod" / "containers" / "c"
    path.mkdir(parents=True)
    return str(path)


@pytest.fixture
def indexers():
    started = []

    def make(**kwargs):
        indexer = LogIndexer(**kwargs)
        indexer.start()
        started.append(indexer)
        return indexer

    yield make
    for indexer in started:
        indexer.stop()


@pytest.fixture
def indexer(indexers):
    return indexers()


def test_an_append_is_stamped_within_milliseconds(indexer, container_dir):
    indexer.watch(container_dir)
    assert indexer.uses_inotify
    latencies = []
    for i in range(20):
        before = time.time_ns()
        append(container_dir, "stdout", b"line %d\n" % i)
        size = os.path.getsize(os.path.join(container_dir, "stdout"))
        wait_until(lambda: covered(container_dir) >= size)
        latencies.append(records(container_dir)[1][-1][1] - before)
        time.sleep(0.005)
    assert min(latencies) >= 0
    assert sorted(latencies)[len(latencies) // 2] < 20_000_000, latencies  # p50 under 20 ms, even on a busy CI box


def test_index_records_end_offsets_and_times_in_order(indexer, container_dir):
    indexer.watch(container_dir)
    for i in range(5):
        append(container_dir, "stderr", b"e%d\n" % i)
        time.sleep(0.01)
    wait_until(lambda: covered(container_dir, "stderr") == 15)
    ino, recs = records(container_dir, "stderr")
    assert ino == os.stat(os.path.join(container_dir, "stderr")).st_ino
    ends = [end for end, _ in recs]
    times = [t for _, t in recs]
    assert ends == sorted(set(ends)) and ends[-1] == 15
    assert times == sorted(times)


def test_idle_containers_cost_no_wakeups(indexer, tmp_path):
    dirs = []
    for i in range(50):
        path = tmp_path / f"c{i}"
        path.mkdir()
        (path / "stdout").write_bytes(b"old\n")
        dirs.append(str(path))
        indexer.watch(str(path))
    time.sleep(0.1)  # the catch-up wrote indexes, whose own events arrive once
    before = dict(indexer.stats)
    time.sleep(0.3)
    assert indexer.stats["batches"] == before["batches"]  # nothing wakes the thread while nothing is written
    assert indexer.watch_counts() == (50, 0)


def test_output_written_while_not_watched_is_stamped_with_mtime(indexers, container_dir):
    first = indexers()
    first.watch(container_dir)
    append(container_dir, "stdout", b"before\n")
    wait_until(lambda: covered(container_dir) == 7)
    first.stop()  # vkcmd goes down; the container goes on writing
    append(container_dir, "stdout", b"while down\n")
    path = os.path.join(container_dir, "stdout")
    last_time = records(container_dir)[1][-1][1]
    time.sleep(0.02)
    mtime = last_time + 10_000_000  # after the last record, before now
    os.utime(path, ns=(mtime, mtime))
    second = indexers()
    second.watch(container_dir)
    _, recs = records(container_dir)
    assert recs[-1] == (18, mtime)
    append(container_dir, "stdout", b"after\n")  # and it is watched again
    wait_until(lambda: covered(container_dir) == 24)


def test_catch_up_never_goes_back_in_time(indexers, container_dir):
    first = indexers()
    first.watch(container_dir)
    append(container_dir, "stdout", b"a\n")
    wait_until(lambda: covered(container_dir) == 2)
    first.stop()
    append(container_dir, "stdout", b"b\n")
    os.utime(os.path.join(container_dir, "stdout"), ns=(1, 1))  # an mtime older than the last record
    indexers().watch(container_dir)
    (_, t1), (_, t2) = records(container_dir)[1]
    assert t2 >= t1


def test_flush_indexes_at_once_and_unwatch_catches_up(container_dir):
    indexer = LogIndexer()  # not started: no events, only explicit calls
    try:
        indexer.watch(container_dir)
        append(container_dir, "stdout", b"x\n")
        indexer.flush(container_dir)
        assert covered(container_dir) == 2
        append(container_dir, "stdout", b"y\n")
        indexer.unwatch(container_dir)
        assert covered(container_dir) == 4
        indexer.unwatch(container_dir)  # a no-op now
    finally:
        indexer.stop()


def test_watch_is_idempotent_and_missing_directory_is_an_error(indexer, container_dir, tmp_path):
    indexer.watch(container_dir)
    indexer.watch(container_dir)
    assert indexer.watch_counts() == (1, 0)
    with pytest.raises(FileNotFoundError):
        indexer.watch(str(tmp_path / "nope"))


def test_rotate_keeps_the_previous_run_with_its_index(indexer, container_dir):
    indexer.watch(container_dir)
    append(container_dir, "stdout", b"run1 out\n")
    append(container_dir, "stderr", b"run1 err\n")
    indexer.rotate(container_dir)  # final catch-up happens inside, no waiting needed
    names = set(os.listdir(container_dir))
    assert {"stdout.previous", "stderr.previous", ".stdout.previous.idx", ".stderr.previous.idx"} <= names
    assert not {"stdout", "stderr", ".stdout.idx", ".stderr.idx"} & names
    ino, recs = records(container_dir, "stdout.previous")
    assert ino == os.stat(os.path.join(container_dir, "stdout.previous")).st_ino and recs[-1][0] == 9
    append(container_dir, "stdout", b"run2\n")  # the new run creates fresh files
    wait_until(lambda: covered(container_dir) == 5)
    assert records(container_dir)[0] == os.stat(os.path.join(container_dir, "stdout")).st_ino
    indexer.rotate(container_dir)  # replaces the older previous
    with open(os.path.join(container_dir, "stdout.previous"), "rb") as f:
        assert f.read() == b"run2\n"
    assert os.path.getsize(os.path.join(container_dir, "stderr.previous")) == 0  # run 2 wrote no stderr


def test_truncation_resets_the_index(indexer, container_dir):
    indexer.watch(container_dir)
    append(container_dir, "stdout", b"one\ntwo\nthree\n")
    wait_until(lambda: covered(container_dir) == 14)
    path = os.path.join(container_dir, "stdout")
    with open(path, "r+b") as f:
        f.truncate(0)
    append(container_dir, "stdout", b"new\n")
    wait_until(lambda: records(container_dir)[1] and records(container_dir)[1][-1][0] == 4)
    assert indexer.stats["resets"] >= 1
    assert records(container_dir)[0] == os.stat(path).st_ino


def test_a_replaced_file_gets_a_fresh_index(indexer, container_dir):
    indexer.watch(container_dir)
    append(container_dir, "stdout", b"first file, long line\n")
    wait_until(lambda: covered(container_dir) == 22)
    os.unlink(os.path.join(container_dir, "stdout"))
    append(container_dir, "stdout", b"second file, longer line\n")
    wait_until(lambda: covered(container_dir) == 25
               and records(container_dir)[0] == os.stat(os.path.join(container_dir, "stdout")).st_ino)
    assert len(records(container_dir)[1]) == 1


def test_a_removed_directory_is_forgotten(indexer, tmp_path):
    path = tmp_path / "gone"
    path.mkdir()
    indexer.watch(str(path))
    append(str(path), "stdout", b"bye\n")
    remove_tree(path)
    wait_until(lambda: indexer.watch_counts() == (0, 0))
    indexer.flush(str(path))  # harmless on a missing directory
    indexer.unwatch(str(path))


def test_many_containers_one_watch_each(indexer, tmp_path):
    limit = int(open("/proc/sys/fs/inotify/max_user_watches").read())
    assert limit >= 1000, "this machine allows too few inotify watches for the test"
    dirs = []
    for i in range(300):
        path = tmp_path / f"c{i:03d}"
        path.mkdir()
        dirs.append(str(path))
        indexer.watch(str(path))
    assert indexer.watch_counts() == (300, 0)  # one watch per directory, not per file
    for i, path in enumerate(dirs):
        append(path, "stdout" if i % 2 else "stderr", b"hello %d\n" % i)
    for i, path in enumerate(dirs):
        wait_until(lambda: covered(path, "stdout" if i % 2 else "stderr") > 0)
    for path in dirs[:150]:
        indexer.unwatch(path)
    for path in dirs[150:]:
        remove_tree(path)
    wait_until(lambda: indexer.watch_counts() == (0, 0))


def test_watch_limit_falls_back_to_polling(indexers, container_dir):
    indexer = indexers(use_inotify=False, poll_interval=0.05)
    indexer.watch(container_dir)
    assert indexer.watch_counts() == (0, 1)
    append(container_dir, "stdout", b"polled\n")
    wait_until(lambda: covered(container_dir) == 7, timeout=2)


def test_past_the_watch_limit_a_container_is_polled(indexers, container_dir, tmp_path):
    indexer = indexers(poll_interval=0.05)
    other = tmp_path / "other"
    other.mkdir()
    indexer.watch(str(other))

    def no_space(path, mask):  # what inotify_add_watch says once max_user_watches is used up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    indexer._inotify.add_watch = no_space
    indexer.watch(container_dir)
    assert indexer.watch_counts() == (1, 1)
    append(container_dir, "stdout", b"polled\n")
    append(str(other), "stdout", b"watched\n")
    wait_until(lambda: covered(container_dir) == 7 and covered(str(other)) == 8, timeout=2)


def test_symlinks_are_neither_indexed_nor_written_through(indexer, container_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    os.symlink(outside, os.path.join(container_dir, "stdout"))
    os.symlink(victim, os.path.join(container_dir, index_name("stderr")))
    indexer.watch(container_dir)
    append(container_dir, "stderr", b"real\n")
    wait_until(lambda: not os.path.islink(os.path.join(container_dir, index_name("stderr"))))
    wait_until(lambda: covered(container_dir, "stderr") == 5)
    assert victim.read_bytes() == b"untouched"  # the planted index symlink was replaced, not followed
    assert not os.path.exists(os.path.join(container_dir, index_name("stdout")))


def test_wait_for_change_wakes_on_output(indexer, container_dir):
    indexer.watch(container_dir)
    token = indexer.changes(container_dir)
    timer = threading.Timer(0.05, append, (container_dir, "stdout", b"wake\n"))
    timer.start()
    started = time.monotonic()
    try:
        new = indexer.wait_for_change(container_dir, token, timeout=5)
    finally:
        timer.join()
    assert new != token and time.monotonic() - started < 2
    time.sleep(0.1)  # let the writer's close event pass too
    new = indexer.changes(container_dir)
    started = time.monotonic()
    assert indexer.wait_for_change(container_dir, new, timeout=0.05) == new  # nothing new: times out
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.05, indexer.notify, (container_dir,)).start()
    assert indexer.wait_for_change(container_dir, new, timeout=5) != new


def test_a_real_process_alternating_streams(indexer, container_dir):
    indexer.watch(container_dir)
    out = open(os.path.join(container_dir, "stdout"), "ab")
    err = open(os.path.join(container_dir, "stderr"), "ab")
    proc = subprocess.Popen(["bash", "-c", "for i in 1 2 3; do echo o$i; sleep 0.1; echo e$i >&2; sleep 0.1; done"],
                            stdout=out, stderr=err, start_new_session=True)
    out.close()
    err.close()
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wait_until(lambda: covered(container_dir) == 9 and covered(container_dir, "stderr") == 9)
    out_times = [t for _, t in records(container_dir)[1]]
    err_times = [t for _, t in records(container_dir, "stderr")[1]]
    assert len(out_times) == 3 and len(err_times) == 3
    merged = sorted([(t, "o") for t in out_times] + [(t, "e") for t in err_times])
    assert [s for _, s in merged] == ["o", "e"] * 3
