"""inotify through libc (ctypes): the instance, its watches, and one batch of events decoded.

Knows the kernel's event layout and masks, nothing of what the watched files mean: the names to
look for are given by the caller (``parse``).
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass, field

from vkcmd.runtime.inotify import (EVENT as _EVENT, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF,  # noqa: F401
                                   IN_EXCL_UNLINK, IN_IGNORED, IN_MODIFY, IN_MOVE_SELF, IN_MOVED_FROM,
                                   IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW, Inotify)

#: What a watch on a container directory asks for.
DIR_MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
            | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
REPLACED = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE  # the name now means another file (or none)
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED  # the watched directory itself


def watch_limit() -> int | None:
    """``/proc/sys/fs/inotify/max_user_watches`` (per user, shared by every process), None if unknown."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


@dataclass
class Batch:
    """What one read of events says. ``touched``: (wd, name) -> the masks seen for a watched name;
    ``first_data``: (wd, name) -> the position of its first IN_MODIFY (the order data arrived in);
    ``replaced``: (wd, name) of other names of interest that were deleted or replaced; ``gone``:
    watches whose directory went away; ``overflow``: the kernel dropped events."""
    touched: dict[tuple[int, bytes], int] = field(default_factory=dict)
    first_data: dict[tuple[int, bytes], int] = field(default_factory=dict)
    replaced: list[tuple[int, bytes]] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    overflow: bool = False
    count: int = 0


def parse(chunks: list[bytes], names: Collection[bytes], others: Collection[bytes]) -> Batch:
    """Decode ``chunks`` read from an inotify fd: events on ``names`` are gathered in ``touched``,
    replacements of ``others`` in ``replaced``."""
    batch = Batch()
    for data in chunks:
        offset, size = 0, len(data)
        while offset < size:
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            offset = start + length
            batch.count += 1
            if mask & IN_Q_OVERFLOW:
                batch.overflow = True
            elif mask & GONE and not length:
                batch.gone.append(wd)
            elif length:
                name = data[start:offset].rstrip(b"\0")
                if name in names:
                    key = (wd, name)
                    batch.touched[key] = batch.touched.get(key, 0) | mask
                    if mask & IN_MODIFY and key not in batch.first_data:
                        batch.first_data[key] = batch.count
                elif mask & REPLACED and name in others:
                    batch.replaced.append((wd, name))
    return batch
