"""Commands run inside a live run (``kubectl exec``): the run's environment, working directory and marker.

The environment and working directory are read back from the run's leader (the
monitor was started with exactly the container's environment and is given its
working directory), so an exec'd process sees what the container sees; it
carries the run's ``VKCMD_RUN`` marker, so the scan counts it in the run's usage
and ends it with the run. Knows nothing of HTTP or of Kubernetes.
"""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import termios
from dataclasses import dataclass
from pathlib import Path

from vkcmd.runtime.process_stat import MARKER
from vkcmd.runtime.spawn import _PERL_STASH, MONITOR, RunInfo


class ExecError(Exception):
    """The command cannot be started; ``exit_code`` is what a shell would report (126, 127)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_context(run: RunInfo) -> tuple[dict[str, str], str]:
    """(environment, working directory) of ``run``, read from its leader."""
    proc = Path("/proc") / str(run.pid)
    try:
        raw_env = (proc / "environ").read_bytes().split(b"\0")
        argv = [a.decode(errors="surrogateescape") for a in (proc / "cmdline").read_bytes().split(b"\0")]
    except OSError as error:
        raise ExecError(f"the container is not running ({error.strerror})", 126) from None
    env: dict[str, str] = {}
    for item in raw_env:
        name, sep, value = item.decode(errors="surrogateescape").partition("=")
        if sep:
            env[name[len(_PERL_STASH):] if name.startswith(_PERL_STASH) else name] = value
    if env.get(MARKER) != run.run_id:
        raise ExecError("the container is not running (its leader has changed)", 126)
    cwd = "/"
    if str(MONITOR) in argv:
        cwd = argv[argv.index(str(MONITOR)) + 2]
    return env, cwd


def _resolve(command: str, env: dict[str, str], cwd: str) -> str:
    if "/" in command:
        path = os.path.join(cwd, command)
        if not os.path.exists(path):
            raise ExecError(f'exec: "{command}": stat {command}: no such file or directory', 127)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise ExecError(f'exec: "{command}": permission denied', 126)
        return path
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None:
        raise ExecError(f'exec: "{command}": executable file not found in $PATH', 127)
    return found


@dataclass
class Exec:
    """A started command: its process, and with a tty the pty's controller side."""

    process: subprocess.Popen
    tty_fd: int | None = None

    def resize(self, width: int, height: int) -> None:
        if self.tty_fd is not None and width > 0 and height > 0:
            fcntl.ioctl(self.tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def start(run: RunInfo, argv: list[str], *, tty: bool, stdin: bool) -> Exec:
    """Start ``argv`` in ``run``; pipes for stdin (when asked), stdout and stderr, or one pty."""
    if not argv:
        raise ExecError("no command given", 126)
    env, cwd = run_context(run)
    program = _resolve(argv[0], env, cwd)
    if not os.path.isdir(cwd):
        raise ExecError(f"the container's working directory {cwd} is gone", 126)
    if tty:
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen([program, *argv[1:]], executable=program, env=env, cwd=cwd,
                                       stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
                                       preexec_fn=_controlling_tty, close_fds=True)
        except OSError as error:
            os.close(controller)
            raise ExecError(f'exec: "{argv[0]}": {error.strerror}', 126) from None
        finally:
            os.close(terminal)
        return Exec(process, controller)
    try:
        process = subprocess.Popen([program, *argv[1:]], executable=program, env=env, cwd=cwd,
                                   stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
    except OSError as error:
        raise ExecError(f'exec: "{argv[0]}": {error.strerror}', 126) from None
    return Exec(process)


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # in the child, after setsid: the pty becomes its terminal
