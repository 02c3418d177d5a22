"""``python -m tools.kubelite``: the ready line, serving, and exit 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ready_line_then_clean_exit(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-m", "tools.kubelite", "--dir", str(tmp_path), "--no-scheduler"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"kubelite ready (https://127\.0\.0\.1:(\d+)) kubeconfig=(\S+)\n", line)
        assert m, line
        assert m.group(3) == str(tmp_path / "kubeconfig") and Path(m.group(3)).is_file()
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with urllib.request.urlopen(m.group(1) + "/healthz", context=ctx, timeout=5) as resp:
            assert resp.read() == b"ok"
        assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert out == ""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
