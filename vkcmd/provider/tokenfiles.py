"""Renewed service-account tokens into running containers: their projected token files rewritten in place.

When a pod's bound token is renewed (at 80 % of its life), each running container's copy of a projected
volume gets the new token atomically (a temporary sibling renamed over the file: a reader sees the old
token or the new one), never through a link the container planted: each directory on the way is opened
``O_NOFOLLOW`` from the container directory, and a mount the container replaced by a link is left alone.
subPath mounts are not updated, as the kubelet's are not. Knows no API client.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any

from vkcmd.pods import ConfigError, Resolver, WorkspaceError
from vkcmd.pods import volumes as vols
from vkcmd.machines import ContainerState as CS
from vkcmd.pods.paths import relative_parts
from vkcmd.provider.records import PodRecord
from vkcmd.runtime import safefs

log = logging.getLogger("vkcmd.provider.tokenfiles")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def renew_running(record: PodRecord, resolver: Resolver) -> None:
    """On the pod's worker (staging runs there too): the renewed tokens into each running container."""
    for container in record.containers():
        if container.state is CS.RUNNING and container.container_dir:
            written = rewrite_tokens(record.pod, container.spec, container.container_dir, resolver)
            if written:
                log.info("renewed service account token written to %d file(s) of %s/%s container %s",
                         written, record.namespace, record.name, container.name)


def rewrite_tokens(pod: dict[str, Any], container: dict[str, Any], container_dir: str, resolver: Resolver) -> int:
    """Bring the token files of ``container``'s projected mounts up to the resolver's current tokens;
    the number of files rewritten (0 when all were current, or none could be had: the old file stays)."""
    meta = pod.get("metadata") or {}
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    ctx = vols.Context(pod, meta.get("namespace") or "default", container.get("name", ""), resolver, {}, "")
    written = 0
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name"))
        if volume is None or mount.get("subPath") or mount.get("subPathExpr"):
            continue
        try:
            files = vols.token_files(volume, ctx)
            parts = relative_parts(mount.get("mountPath", ""), "mountPath")
        except (ConfigError, WorkspaceError):
            continue  # no token to be had now (the old one stays until it is), or a mount staging refused
        for rel, file in files.items():
            mode = file.mode & ~0o222 if mount.get("readOnly") else file.mode
            written += _replace(container_dir, parts + tuple(rel.split("/")), file.data, mode)
    return written


def _replace(container_dir: str, parts: tuple[str, ...], data: bytes, mode: int) -> bool:
    """Write ``data`` at ``parts`` under ``container_dir`` unless it is there already; False when it was,
    or when the way there is not the directories staging made (a link, a file, gone)."""
    try:
        dfd = safefs.open_dir(container_dir)
    except OSError:
        return False
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        if _holds(dfd, parts[-1], data):
            return False
        dir_mode = stat.S_IMODE(os.fstat(dfd).st_mode)
        if not dir_mode & stat.S_IWUSR:  # a readOnly mount: writable for the rename only
            os.fchmod(dfd, dir_mode | stat.S_IWUSR)
        try:
            safefs.replace_file(dfd, parts[-1], data, mode)
        finally:
            if not dir_mode & stat.S_IWUSR:
                os.fchmod(dfd, dir_mode)
        return True
    except OSError as error:
        log.info("a projected token file was not rewritten: %s", error.strerror or error)
        return False
    finally:
        os.close(dfd)


def _holds(dfd: int, name: str, data: bytes) -> bool:
    """``name`` is a regular file whose content is ``data`` (read without following a link or blocking)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(len(data) + 1) == data
    finally:
        os.close(fd)
