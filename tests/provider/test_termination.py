"""Termination messages read from a real container directory, including links and FIFOs a container planted."""

from __future__ import annotations

import os

from vkcmd.provider.termination import prepare, termination_message


def test_the_message_file_is_read_under_the_container_directory_and_capped(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "termination-log").write_text("x" * 5000)
    assert termination_message(str(tmp_path), {}, 4) == "x" * 4096
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "msg").write_text("bye")
    assert termination_message(str(tmp_path), {"terminationMessagePath": "/custom/msg"}, 0) == "bye"


def test_fallback_to_logs_only_on_error_and_only_without_a_message(tmp_path):
    (tmp_path / "stdout").write_text("".join(f"line {n}\n" for n in range(200)))
    (tmp_path / "stderr").write_text("boom\n")
    spec = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    tail = termination_message(str(tmp_path), spec, 2)
    assert tail.endswith("line 199\nboom\n") and len(tail.splitlines()) == 80 and len(tail.encode()) <= 2048
    assert termination_message(str(tmp_path), spec, 0) == ""
    assert termination_message(str(tmp_path), {}, 2) == ""  # File policy: no fallback
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "termination-log").write_text("own words")
    assert termination_message(str(tmp_path), spec, 2) == "own words"


def test_planted_links_fifos_and_escapes_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "termination-log").write_text("secret")
    (outside / "file").write_text("secret")
    container = tmp_path / "c"
    container.mkdir()
    os.symlink(outside, container / "dev")  # a link in place of the directory
    assert termination_message(str(container), {}, 1) == ""
    prepare(str(container), {})  # neither follows the link nor removes what is behind it
    assert (outside / "termination-log").read_text() == "secret"
    os.unlink(container / "dev")
    (container / "dev").mkdir()
    os.symlink(outside / "file", container / "dev" / "termination-log")  # a link in place of the file
    assert termination_message(str(container), {}, 1) == ""
    os.unlink(container / "dev" / "termination-log")
    os.mkfifo(container / "dev" / "termination-log")  # a FIFO nobody writes: must not block
    assert termination_message(str(container), {}, 1) == ""
    assert termination_message(str(container), {"terminationMessagePath": "../outside/file"}, 1) == ""


def test_prepare_makes_the_directory_and_clears_the_last_message(tmp_path):
    prepare(str(tmp_path), {})
    assert (tmp_path / "dev").is_dir()
    (tmp_path / "dev" / "termination-log").write_text("old run")
    prepare(str(tmp_path), {})
    assert not (tmp_path / "dev" / "termination-log").exists()
