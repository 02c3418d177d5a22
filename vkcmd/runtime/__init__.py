"""The runtime: container runs as Linux sessions, the only code that spawns, signals and reaps them.

Owns: spawning a run through the ``monitor.sh`` session leader (``spawn``), learning of exits from
pidfds (``reaper``), telling which processes belong to which run, escaped ones included
(``tracker``), usage (``usage``), the on-disk records that let a restarted vkcmd re-adopt its runs
(``state``), and safe writes into directories a run can write (``safefs``). Container logs are
``vkcmd.containerlogs``. Knows runs by opaque keys: nothing of pods, Kubernetes or HTTP
(tests/unit/test_layers.py keeps it so).

Public API: ``Runtime``, ``LaunchSpec``, ``RunInfo``, ``ExitReport``, ``Recovered``, ``Usage``,
``NodeUsage``, ``LaunchError`` and the exit reasons.
"""

from vkcmd.runtime.process import Recovered, Runtime
from vkcmd.runtime.reaper import (COMPLETED, ERROR, OOM_KILLED, REASONS, START_ERROR, STATUS_UNKNOWN,
                                  ExitReport)
from vkcmd.runtime.spawn import LaunchError, LaunchSpec, RunInfo
from vkcmd.runtime.usage import NodeUsage, Usage

__all__ = [
    "Runtime", "LaunchSpec", "RunInfo", "ExitReport", "Recovered", "Usage", "NodeUsage", "LaunchError",
    "COMPLETED", "ERROR", "OOM_KILLED", "STATUS_UNKNOWN", "START_ERROR", "REASONS",
]
