"""Starting one run: ``posix_spawn`` of the ``monitor.sh`` session leader, and the pgid file.

The only place that creates container processes. It knows what a run needs (argv, env, cwd, files),
not who asked for it: the key is opaque. No ``subprocess.Popen``: nothing but the reaper waits for a
run's leader, and other code in vkcmd may use ``subprocess`` for its own children.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import shutil
import signal
import sys
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vkcmd.runtime.process_stat import MARKER
from vkcmd.runtime import safefs
from vkcmd.runtime.stdins import StdinTable

MONITOR = Path(__file__).with_name("monitor.sh")
#: Environment names the monitor uses for itself; dropped from a run's env so that they cannot leak.
RESERVED_ENV_PREFIX = "_vkcmd_"
_PR_SET_CHILD_SUBREAPER = 36
#: prctl(2)'s syscall number, for the perl stub (perl's syscall() takes a number).
_SYS_PRCTL = {"x86_64": 157, "aarch64": 167, "riscv64": 167, "ppc64le": 171, "ppc64": 171, "s390x": 172,
              "i686": 172, "i386": 172, "armv7l": 172, "armv6l": 172, "loongarch64": 167}
# The leader's first instructions: become a child subreaper (orphans of the run are re-parented to
# it, not to init), then exec the monitor with the run's environment. perl starts in ~1 ms (python
# in ~8). Variables that steer perl itself (PERL5OPT, PERL5LIB, ...) reach it renamed and are put
# back before the exec, so that a pod's environment cannot change what the stub does; PERL_BADLANG
# keeps perl quiet about a locale the host lacks.
_PERL_STASH = "_vkcmd_p_"
_PERL_STUB = ("syscall(0 + shift, %d, 1, 0, 0, 0); delete $ENV{PERL_BADLANG};"
              " for (grep { /^%s/ } keys %%ENV) { $ENV{substr $_, %d} = delete $ENV{$_} }"
              " exec { $ARGV[0] } @ARGV; exit 127" % (_PR_SET_CHILD_SUBREAPER, _PERL_STASH, len(_PERL_STASH)))
_PYTHON_STUB = ("import ctypes, os, sys; ctypes.CDLL(None).prctl(%d, 1, 0, 0, 0);"
                " os.execv(sys.argv[1], sys.argv[1:])" % _PR_SET_CHILD_SUBREAPER)
_DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


class LaunchError(Exception):
    """The run could not be started (bad spec, spawn failure, key already running)."""


@dataclass(frozen=True)
class LaunchSpec:
    """One run of one container.

    ``argv`` is executed as given (looked up in the env's PATH when it has no slash, never re-split
    by a shell, never taken as a shell builtin). ``env`` is the complete environment (the runtime only
    adds ``VKCMD_RUN``). ``container_dir`` must exist: it receives ``pgid``, and the run's output is
    appended to its ``stdout`` and ``stderr``. ``cpu_limit_cores`` is best effort: below the host's
    CPU count the run is started under ``nice`` (the smaller its share of the host, the nicer).
    """
    key: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    container_dir: str
    memory_limit_bytes: int | None = None
    cpu_limit_cores: float | None = None
    stdin: bool = False  # the pod's ``stdin``: a pipe (a pty with ``tty``) whose write end vkcmd keeps
    stdin_once: bool = False
    tty: bool = False

    def __post_init__(self):
        object.__setattr__(self, "argv", tuple(self.argv))


@dataclass(frozen=True)
class RunInfo:
    """A started run. The leader is the monitor; ``pid == pgid == sid``. ``leader_start`` is the
    leader's start time in clock ticks after boot (/proc/<pid>/stat field 22); with the pid it names
    the process for good, so a reused pid is never mistaken for it. ``started_at`` is wall time."""
    key: str
    run_id: str
    pid: int
    pgid: int
    leader_start: int
    started_at: float
    container_dir: str = field(default="", compare=False)


def nice_level(cpu_limit_cores: float | None, host_cpus: int) -> int:
    """0 (no change) without a limit or with one of at least the host's CPUs, else 1..19."""
    if cpu_limit_cores is None or cpu_limit_cores >= host_cpus or host_cpus <= 0:
        return 0
    share = max(cpu_limit_cores, 0.0) / host_cpus
    return max(1, min(19, round(19 * (1 - share))))


def cloexec_inherited_fds() -> int:
    """Mark close-on-exec every fd above 2 that vkcmd inherited without it (from its parent shell,
    Slurm, ...), so that runs do not inherit them: ``posix_spawn`` closes nothing by itself.
    Python opens its own fds close-on-exec. Returns how many were marked."""
    marked = 0
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    for fd in fds:
        if fd <= 2:
            continue
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            if not flags & fcntl.FD_CLOEXEC:
                fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
                marked += 1
        except OSError:
            pass
    return marked


def _high_fd(fd: int) -> int:
    """posix_spawn's dup2 onto 0..2 must not start from 0..2 (vkcmd may run with them closed)."""
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


class Spawner:
    """Spawns monitors. ``child_nofile``: the soft RLIMIT_NOFILE runs get (vkcmd raises its own
    to hold many pidfds; runs get back the limit vkcmd started with). None = leave as inherited."""

    def __init__(self, shell: str = "/bin/sh", child_nofile: int | None = None,
                 host_cpus: int | None = None, subreaper: bool = True, stdins: StdinTable | None = None):
        self.shell = shell
        self.stdins = stdins if stdins is not None else StdinTable()
        self.child_nofile = child_nofile
        self.host_cpus = host_cpus or os.cpu_count() or 1
        self._nice = shutil.which("nice", path="/usr/bin:/bin")
        self._stub = subreaper_stub() if subreaper else []

    @property
    def subreaper(self) -> str:
        """How leaders become child subreapers: "perl", "python", or "" (not at all)."""
        return "" if not self._stub else ("perl" if self._stub[1] == "-e" else "python")

    def check(self, spec: LaunchSpec) -> None:
        if not spec.argv or not spec.argv[0]:
            raise LaunchError(f"{spec.key}: empty command")
        if any("\0" in a for a in spec.argv):
            raise LaunchError(f"{spec.key}: NUL byte in argv")
        if not os.path.isdir(spec.container_dir):
            raise LaunchError(f"{spec.key}: container directory {spec.container_dir} does not exist")
        if not os.path.isdir(spec.cwd):
            raise LaunchError(f"{spec.key}: working directory {spec.cwd} does not exist")
        if spec.memory_limit_bytes is not None and spec.memory_limit_bytes <= 0:
            raise LaunchError(f"{spec.key}: memory limit must be positive")

    def argv_of(self, spec: LaunchSpec, exit_path: str) -> list[str]:
        argv = list(spec.argv)
        level = nice_level(spec.cpu_limit_cores, self.host_cpus)
        if level and self._nice:
            argv = [self._nice, "-n", str(level), "--", *argv]
        nofile = "-" if self.child_nofile is None else str(self.child_nofile)
        return [*self._stub, self.shell, str(MONITOR), exit_path, os.path.abspath(spec.cwd), nofile, *argv]

    def env_of(self, spec: LaunchSpec, run_id: str) -> dict[str, str]:
        env = {k: v for k, v in spec.env.items() if not k.startswith(RESERVED_ENV_PREFIX)}
        env[MARKER] = run_id
        if self.subreaper == "perl":
            env = {(_PERL_STASH + k if k.startswith("PERL") else k): v for k, v in env.items()}
            env["PERL_BADLANG"] = "0"
        return env

    def spawn(self, spec: LaunchSpec, run_id: str, exit_path: str) -> int:
        """Start the run's monitor in a new session; returns its pid (= pgid = sid)."""
        self.check(spec)
        argv = self.argv_of(spec, exit_path)
        env = self.env_of(spec, run_id)
        # relative to the directory, never through a link: a run may have planted one at any name
        fds = []
        dfd = None
        writer = None
        try:
            dfd = open_container_dir(spec)
            if spec.stdin:
                reader, writer = _stdin_pair(spec)
            else:
                reader = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            fds.append(_high_fd(reader))
            fds.append(_high_fd(safefs.open_append(dfd, "stdout")))
            fds.append(_high_fd(safefs.open_append(dfd, "stderr")))
            actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True,
                                 setsigdef=_DEFAULT_SIGNALS, setsigmask=())
            if writer is not None:
                self.stdins.put(run_id, writer, pid, once=spec.stdin_once, tty=spec.tty)
                writer = None
            return pid
        except OSError as err:
            raise LaunchError(f"{spec.key}: cannot start {spec.argv[0]!r}: {err}") from err
        finally:
            if writer is not None:
                os.close(writer)
            for fd in fds:
                os.close(fd)
            if dfd is not None:
                os.close(dfd)

    @staticmethod
    def write_pgid(container_dir: str, pgid: int) -> None:
        """``<container_dir>/pgid`` replaced atomically (temp file O_EXCL|O_NOFOLLOW, then rename)."""
        dfd = safefs.open_dir(container_dir)
        try:
            safefs.replace_file(dfd, "pgid", f"{pgid}\n".encode())
        finally:
            os.close(dfd)


def _stdin_pair(spec: LaunchSpec) -> tuple[int, int]:
    """(the run's end, vkcmd's end) of its stdin: a pipe, or with ``tty`` a pty without echo (output
    stays in the log files, so nothing reads the pty's output side)."""
    if not spec.tty:
        return os.pipe()
    controller, terminal = os.openpty()
    attrs = termios.tcgetattr(terminal)
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    termios.tcsetattr(terminal, termios.TCSANOW, attrs)
    os.set_inheritable(terminal, False)
    os.set_inheritable(controller, False)
    return terminal, controller


def subreaper_stub() -> list[str]:
    """The argv prefix that makes the leader a child subreaper before it execs the monitor: a perl
    one-liner (with prctl's number for this machine), else python; [] when neither is at hand."""
    perl = shutil.which("perl", path="/usr/bin:/bin:/usr/local/bin")
    number = _SYS_PRCTL.get(os.uname().machine)
    if perl and number:
        return [perl, "-e", _PERL_STUB, str(number)]
    if sys.executable:
        return [sys.executable, "-I", "-S", "-c", _PYTHON_STUB]
    return []


def open_container_dir(spec: LaunchSpec) -> int:
    """The container directory's fd, reached through no symlink (LaunchError otherwise)."""
    try:
        return safefs.open_dir(spec.container_dir)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LaunchError(f"{spec.key}: container directory {spec.container_dir} is reached through a"
                              " symbolic link or is not a directory") from err
        raise LaunchError(f"{spec.key}: cannot open container directory {spec.container_dir}: {err}") from err


_NOFILE_AT_START = resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_nofile() -> int | None:
    """Raise vkcmd's soft RLIMIT_NOFILE to its hard limit (one pidfd per run, plus an fd per watched
    process). Returns the soft limit vkcmd started with, which runs get back, or None when vkcmd's
    limit is (still) that one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == _NOFILE_AT_START else _NOFILE_AT_START
