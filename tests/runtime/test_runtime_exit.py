"""Runs as they start and end: exit codes, output files, argv, cwd, environment, the pgid file."""

from __future__ import annotations

import os
import time

import pytest

from vkcmd.runtime import COMPLETED, ERROR, LaunchError

from .conftest import Harness, live


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_codes(rt, code):
    info = rt.sh("p/c", f"exit {code}")
    report = rt.exit()
    assert (report.key, report.run_id, report.exit_code) == ("p/c", info.run_id, code)
    assert report.reason == (COMPLETED if code == 0 else ERROR)
    assert report.signal is None
    assert report.finished_at >= info.started_at
    assert "p/c" not in rt.rt.runs()


@pytest.mark.parametrize("sig,code", [("TERM", 143), ("KILL", 137), ("SEGV", 139)])
def test_signal_death_is_128_plus_n(rt, sig, code):
    rt.sh("p/c", f"kill -{sig} $$")
    report = rt.exit()
    assert (report.exit_code, report.signal, report.reason) == (code, code - 128, ERROR)
    assert rt.out("p/c", "stderr") == ""        # no "Terminated"/"Killed" note from the monitor


def test_exit_is_on_disk_when_it_is_reported(runtimes):
    reported = {}

    def on_exit(report):                           # what a restarted vkcmd would read right now
        h2 = Harness(h.base, h.state)
        try:
            reported["recovered"] = h2.rt.recover()
        finally:
            h2.rt.stop()
        h.exits.put(report)
    h = runtimes(on_exit=on_exit)
    info = h.sh("p/c", "exit 4")
    report = h.exit()
    assert (h.state / "runs" / f"{info.run_id}.exit").read_text() == "4\n"
    [recovered] = reported["recovered"]
    assert recovered.exit == report and report.exit_code == 4


def test_stdout_and_stderr_files(rt):
    rt.sh("p/c", "echo to-out; echo to-err >&2; printf 'no newline'")
    assert rt.exit().exit_code == 0
    assert rt.out("p/c") == "to-out\nno newline"
    assert rt.out("p/c", "stderr") == "to-err\n"


def test_output_is_appended_across_runs(rt):
    rt.sh("p/c", "echo one")
    rt.exit()
    rt.sh("p/c", "echo two")
    rt.exit()
    assert rt.out("p/c") == "one\ntwo\n"


def test_stdin_is_dev_null(rt):
    rt.launch("p/c", ["cat"])
    assert rt.exit().exit_code == 0
    assert rt.out("p/c") == ""


def test_pgid_file_is_the_real_group(rt, tmp_path):
    info = rt.sh("p/c", "sleep 30 & echo $! > child; wait")
    d = rt.cdir("p_c")
    deadline = time.monotonic() + 5
    while not (d / "child").exists() or not (d / "child").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child = int((d / "child").read_text())
    assert (d / "pgid").read_text() == f"{info.pgid}\n"
    assert info.pgid == info.pid == os.getpgid(info.pid) == os.getsid(info.pid)
    assert os.getpgid(child) == info.pgid
    assert set(rt.rt.processes("p/c")) >= {info.pid, child}
    rt.rt.kill_now("p/c")
    assert rt.exit().exit_code == 137


def test_marker_reaches_grandchildren(rt):
    info = rt.sh("p/c", "sh -c 'tr \"\\0\" \"\\n\" < /proc/self/environ' | grep ^VKCMD_RUN=")
    assert rt.exit().exit_code == 0
    assert rt.out("p/c") == f"VKCMD_RUN={info.run_id}\n"


def test_environment_is_exactly_the_given_one(rt):
    rt.launch("p/c", ["/usr/bin/env", "-0"], env={"A": "1", "B": "two words", "_vkcmd_exit": "must not leak"})
    assert rt.exit().exit_code == 0
    env = dict(item.split("=", 1) for item in rt.out("p/c").split("\0") if item)
    env.pop("PWD", None)                       # set by the monitor's cd, as a shell would
    env.pop("OLDPWD", None)
    run_id = env.pop("VKCMD_RUN")
    assert env == {"A": "1", "B": "two words"} and run_id


def test_argv_is_passed_as_given(rt):
    args = ["a b", "'q'", '"d"', "$HOME", "`id`", "*", "$(echo x)", "back\\slash", "", "-n"]
    rt.launch("p/c", ["printf", "[%s]\\n", *args])
    assert rt.exit().exit_code == 0
    assert rt.out("p/c") == "".join(f"[{a}]\n" for a in args)


def test_shell_builtin_names_run_programs(rt):
    rt.launch("p/c", ["echo", "a\\nb"])         # /bin/echo, not the shell's (which would expand \n)
    assert rt.exit().exit_code == 0
    assert rt.out("p/c") == "a\\nb\n"
    rt.launch("p/d", ["exit", "5"])             # no program named exit: not the shell's builtin
    assert rt.exit().exit_code == 127


def test_cwd(rt, tmp_path):
    work = tmp_path / "some where"
    work.mkdir()
    rt.launch("p/c", ["pwd", "-P"], cwd=str(work))
    assert rt.exit().exit_code == 0
    assert rt.out("p/c") == f"{work.resolve()}\n"


def test_command_not_found_is_127(rt):
    rt.launch("p/c", ["no-such-command-xyz", "arg"])
    report = rt.exit()
    assert (report.exit_code, report.reason) == (127, ERROR)
    assert "no-such-command-xyz" in rt.out("p/c", "stderr") and "not found" in rt.out("p/c", "stderr")


def test_not_executable_is_126(rt, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    rt.launch("p/c", [str(script)])
    assert rt.exit().exit_code == 126
    assert "Permission denied" in rt.out("p/c", "stderr")


def test_exit_is_noticed_quickly(rt):
    t0 = time.monotonic()
    rt.launch("p/c", ["true"])
    rt.exit()
    assert time.monotonic() - t0 < 1.0
    rt.sh("p/d", "sleep 0.3")
    t0 = time.monotonic()
    rt.exit()
    assert 0.1 < time.monotonic() - t0 < 1.0


def test_launch_errors(rt, tmp_path):
    with pytest.raises(LaunchError, match="working directory"):
        rt.launch("p/c", ["true"], cwd=str(tmp_path / "missing"))
    with pytest.raises(LaunchError, match="empty command"):
        rt.launch("p/c", [])
    rt.launch("p/c", ["sleep", "30"])
    with pytest.raises(LaunchError, match="already running"):
        rt.launch("p/c", ["true"])
    rt.rt.kill_now("p/c")
    assert rt.exit().exit_code == 137
    rt.launch("p/c", ["true"])                   # a key whose run ended gets a new run
    assert rt.exit().exit_code == 0


def test_runs_lists_live_runs(rt):
    info = rt.launch("p/c", ["sleep", "30"])
    assert rt.rt.runs() == {"p/c": info}
    assert live(info.pid, info.leader_start)
    rt.rt.kill_now("p/c")
    rt.exit()
    assert rt.rt.runs() == {}


@pytest.mark.parametrize("shell", ["/bin/bash"])
def test_monitor_under_another_shell(runtimes, shell):
    h = runtimes(shell=shell)
    h.sh("p/a", "exit 3")
    assert h.exit().exit_code == 3
    h.sh("p/b", "kill -TERM $$")
    assert h.exit().exit_code == 143
    h.launch("p/c", ["no-such-command-xyz"])
    assert h.exit().exit_code == 127
    h.launch("p/d", ["echo", "x y"])
    assert h.exit().exit_code == 0 and h.out("p/d") == "x y\n"
    assert h.out("p/b", "stderr") == ""


def test_the_subreaper_stub_leaves_the_environment_as_given(rt):
    """The leader starts as a perl (or python) one-liner: variables that steer perl reach the
    command unchanged, the stub's own do not, and a locale the host lacks makes no noise."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PERL5OPT": "-Mno::such::module",
           "PERL5LIB": "/nowhere", "LC_ALL": "xx_XX.UTF-8", "PYTHONPATH": "/nowhere"}
    rt.sh("p/env", 'echo "$PERL5OPT|$PERL5LIB|${PERL_BADLANG-unset}|$LC_ALL|$PYTHONPATH"', env=env)
    assert rt.exit().exit_code == 0
    assert rt.out("p/env") == "-Mno::such::module|/nowhere|unset|xx_XX.UTF-8|/nowhere\n"
    assert rt.out("p/env", "stderr") == ""
