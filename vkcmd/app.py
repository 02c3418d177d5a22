"""Wires the node's threads together (the only module that knows all layers)."""

from __future__ import annotations

import logging

from vkcmd.config import Settings

log = logging.getLogger("vkcmd.app")


def run(settings: Settings) -> int:
    """Run the node until it expires; return the process exit code."""
    log.error("the node runtime is not implemented yet (settings are valid)")
    return 1
