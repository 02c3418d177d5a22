"""Container logs: the stream files a run appends to, their arrival-time index, and reading them.

``indexer`` (the thread that stamps appends, via ``inotify``), ``directory`` (one container
directory's indexes and their rotation), ``indexfile`` (the on-disk format: writer and reader),
``stream`` (one stream file being read) and ``reader`` (``kubectl logs`` semantics). Knows nothing
of Kubernetes, HTTP or how processes are spawned; imports only ``vkcmd.runtime.safefs``.
"""

from vkcmd.containerlogs.indexer import LogIndexer
from vkcmd.containerlogs.reader import LogOptions, LogsUnavailable, LogStream, PreviousNotFound, format_timestamp, stream_logs

__all__ = ["LogIndexer", "LogOptions", "LogsUnavailable", "LogStream", "PreviousNotFound", "format_timestamp",
           "stream_logs"]
