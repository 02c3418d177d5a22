"""Staging: a pod's container spec → files in its workspace, and the argv, env and cwd to run.

:func:`stage_container` resolves every volume the container mounts (objects
first, so a missing one fails before anything is written), builds the
environment, writes the mounts, picks the script named by ``image`` and expands
command and args. It is idempotent: staging again replaces every mount whole
(a key removed from a ConfigMap leaves no stale file). It writes only under
``<root>/<namespace>/<pod>/`` (hostPath volumes are symlinks, never written
through) and raises only :class:`ConfigError`. It does not spawn processes
and does not know the API client.

Mounts: configMap, secret, projected and downwardAPI volumes are written once
to ``<pod>/volumes/<volume>/`` and copied to each ``mountPath`` (relative to the
container directory, even when absolute); emptyDir and hostPath mounts are
symlinks to ``<pod>/volumes/<volume>/`` and to the host path. ``readOnly``
copies lose their write bits; it cannot be enforced on links. Files a process
writes into a copied mount are gone after the next staging (as a restarted
container gets a fresh filesystem); emptyDir data stays until the pod is removed.
Expansion of command, args and env values: see :mod:`vkcmd.pods.expand`.

Script rule: ``image`` names a volumeMount (by volume name). A volume with one
file: that file is the script; ``image: <volume>/<file>`` picks one of several.
argv = command + [script] + args; with no command the script itself is
executed (like an image entrypoint): it gets execute bits where it has read bits.
An image that names no mount means no script: argv = command + args.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from vkcmd.logs import fields
from vkcmd.pods import errors
from vkcmd.pods import volumes as vols
from vkcmd.pods.envvars import StagingEvent, build_env
from vkcmd.pods.errors import ConfigError, WorkspaceError, config_error
from vkcmd.pods.expand import expand_arg, kubelet_expand
from vkcmd.pods.paths import DIR_MODE, create_file, ensure_dir, relative_parts, replace_entry, within, Workspace
from vkcmd.pods.quantity import cpu_cores, memory_bytes
from vkcmd.pods.resolver import Resolver

log = logging.getLogger(__name__)

# Top-level names of a container directory that belong to the runtime, never to a mount.
RESERVED_NAMES = frozenset({"pgid", "stdout", "stderr", "stdout.previous", "stderr.previous"})
_RESERVED_PREFIXES = (".stdout", ".stderr", ".vkcmd-")
SECRET_DIR_MODE = 0o700


@dataclass(frozen=True)
class StagedContainer:
    """What to run for one container, and where. ``env`` and ``argv`` may hold secret values: not in repr."""

    argv: list[str] = field(repr=False)
    env: dict[str, str] = field(repr=False)
    cwd: str
    container_dir: str
    script: str | None
    image_id: str
    memory_limit_bytes: int | None
    cpu_limit_cores: float | None
    skipped_env: list[str] = field(default_factory=list)
    events: list[StagingEvent] = field(default_factory=list)


@dataclass
class _Mount:
    volume: str
    mount_path: str
    parts: tuple[str, ...]
    read_only: bool
    sub_path: str
    sub_path_expr: str
    path: str = ""                                              # absolute, under the container directory
    files: list[tuple[str, str]] | None = None                  # copies: (path in the mount, key)
    link: vols.Link | None = None


def stage_container(pod: dict, container: dict, workspace: Workspace, resolver: Resolver, *, home: str,
                    base_env: Mapping[str, str]) -> StagedContainer:
    """Stage ``container`` of ``pod`` in ``workspace``; see the module docstring. Raises :class:`ConfigError`."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    pod_name = meta.get("name", "")
    name = container.get("name", "")
    try:
        workspace.container_dir(namespace, pod_name, name)
        return _stage(pod, spec, container, namespace, pod_name, name, workspace, resolver, home, base_env)
    except WorkspaceError as exc:
        raise config_error(str(exc), errors.BAD_PATH) from None
    except ConfigError:
        raise
    except OSError as exc:
        raise ConfigError("CreateContainerError", f"staging failed: {exc.strerror or exc}"
                          + (f": {exc.filename}" if exc.filename else ""), cause="IOError", retryable=True) from None


def _stage(pod: dict, spec: dict, container: dict, namespace: str, pod_name: str, name: str,
           workspace: Workspace, resolver: Resolver, home: str, base_env: Mapping[str, str]) -> StagedContainer:
    memory, cpu = _limits(container)
    volumes = {volume.get("name"): volume for volume in spec.get("volumes") or []}
    mounts = _plan_mounts(container, volumes)
    node_facts = resolver.node_facts()
    ctx = vols.Context(pod, namespace, name, resolver, node_facts,
                       os.path.join(workspace.pod_dir(namespace, pod_name), "volumes"))
    contents: dict[str, vols.Files | vols.Link] = {}
    for mount in mounts:  # every object is read before anything is written
        if mount.volume not in contents:
            contents[mount.volume] = vols.content(volumes[mount.volume], ctx)
    environment = build_env(pod, container, resolver, node_facts, home=home, base_env=base_env)
    env = environment.env
    sub_paths = [_sub_path(mount, env) for mount in mounts]
    command = [expand_arg(_string(c, "command"), env, home) for c in container.get("command") or []]
    args = [expand_arg(_string(a, "args"), env, home) for a in container.get("args") or []]

    container_dir = workspace.ensure_container(namespace, pod_name, name)
    copied = {volume: content for volume, content in contents.items() if isinstance(content, vols.Files)}
    if copied:
        with workspace.pod_lock(namespace, pod_name):
            volume_root = ensure_dir(workspace.ensure_pod(namespace, pod_name), ("volumes",), mode=workspace.dir_mode)
            for volume, content in copied.items():
                replace_entry(volume_root, volume, lambda path, c=content: _write_tree(path, c.files, _dir_mode(c)))
    for mount, sub_parts in zip(mounts, sub_paths):
        content = contents[mount.volume]
        if isinstance(content, vols.Files):
            _copy_mount(container_dir, mount, content, sub_parts)
        else:
            _link_mount(container_dir, mount, content, sub_parts, workspace, namespace, pod_name)

    image = container.get("image") or ""
    script = _script(image, name, volumes, mounts)
    if script is not None and not command:
        _make_executable(script, container_dir)
    mount_points = {mount.path for mount in mounts}
    for mount in mounts:
        if mount.read_only and mount.files is not None:
            _make_read_only(mount.path, mount_points - {mount.path})

    if script is not None:
        argv = command + [script] + args
    else:
        argv = command + args
        if not argv:
            raise config_error(f'container "{name}" has no command, and its image "{image}" names no script volume')
    staged = StagedContainer(
        argv=argv, env=env, cwd=_working_dir(container, workspace, namespace, pod_name, name)
        or (os.path.dirname(script) if script else container_dir),
        container_dir=container_dir, script=script, image_id=script or image,
        memory_limit_bytes=memory, cpu_limit_cores=cpu,
        skipped_env=environment.skipped, events=environment.events)
    log.debug("container staged", extra=fields(namespace=namespace, pod=pod_name, container=name,
                                                mounts=len(mounts), script=script))
    return staged


def _working_dir(container: Mapping, workspace: Workspace, namespace: str, pod: str, name: str) -> str:
    """``workingDir`` re-rooted under the container directory, created if missing ("" when unset);
    a link in it may lead to the pod's volumes, never out of the pod's directory."""
    working = container.get("workingDir")
    if not working:
        return ""
    try:
        parts = relative_parts(working, "workingDir")
        return ensure_dir(workspace.pod_dir(namespace, pod), ("containers", name, *parts), what="workingDir")
    except WorkspaceError as error:
        raise config_error(str(error)) from error


# --- spec checks -----------------------------------------------------------------

def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise config_error(f"{what} elements must be strings, got {type(value).__name__}")
    return value


def _limits(container: dict) -> tuple[int | None, float | None]:
    limits = (container.get("resources") or {}).get("limits") or {}
    try:
        memory = memory_bytes(limits["memory"]) if limits.get("memory") is not None else None
        cpu = cpu_cores(limits["cpu"]) if limits.get("cpu") is not None else None
    except ValueError as exc:
        raise config_error(f"resources.limits: {exc}") from None
    if (memory is not None and memory <= 0) or (cpu is not None and cpu <= 0):
        raise config_error("resources.limits: memory and cpu limits must be positive")
    return memory, cpu


def _plan_mounts(container: dict, volumes: dict) -> list[_Mount]:
    mounts, seen = [], set()
    for vm in container.get("volumeMounts") or []:
        volume = vm.get("name", "")
        if volume not in volumes:
            raise config_error(f'volumeMount "{volume}" refers to volume "{volume}", which the pod does not define')
        mount_path = vm.get("mountPath", "")
        try:
            parts = relative_parts(mount_path, f'mountPath of volumeMount "{volume}"')
        except WorkspaceError as exc:
            raise config_error(str(exc), errors.BAD_PATH) from None
        if not parts:
            raise config_error(f'mountPath {mount_path!r} of volumeMount "{volume}" is the container directory'
                               " itself; use a subdirectory", errors.BAD_PATH)
        if parts[0] in RESERVED_NAMES or parts[0].startswith(_RESERVED_PREFIXES):
            raise config_error(f'mountPath {mount_path!r} of volumeMount "{volume}" is reserved for the runtime',
                               errors.BAD_PATH)
        if parts in seen:
            raise config_error(f"mountPath {mount_path!r} is used by more than one volumeMount", errors.BAD_PATH)
        seen.add(parts)
        mounts.append(_Mount(volume, mount_path, parts, bool(vm.get("readOnly")),
                             vm.get("subPath") or "", vm.get("subPathExpr") or ""))
    mounts.sort(key=lambda m: len(m.parts))  # parents before the mounts nested in them
    return mounts


def _sub_path(mount: _Mount, env: Mapping[str, str]) -> tuple[str, ...]:
    sub_path = kubelet_expand(mount.sub_path_expr, env) if mount.sub_path_expr else mount.sub_path
    try:
        return relative_parts(sub_path, f'subPath of volumeMount "{mount.volume}"')
    except WorkspaceError as exc:
        raise config_error(str(exc), errors.BAD_PATH) from None


# --- writing ---------------------------------------------------------------------

def _dir_mode(content: vols.Files) -> int:
    return SECRET_DIR_MODE if content.secret else DIR_MODE


def _write_tree(path: str, files: Mapping[str, vols.File], dir_mode: int) -> None:
    os.mkdir(path, dir_mode)
    for rel, file in files.items():
        parts = tuple(rel.split("/"))
        parent = ensure_dir(path, parts[:-1], mode=dir_mode) if len(parts) > 1 else path
        create_file(os.path.join(parent, parts[-1]), file.data, file.mode)


def _copy_mount(container_dir: str, mount: _Mount, content: vols.Files, sub_parts: tuple[str, ...]) -> None:
    files = content.files
    single = None
    if sub_parts:
        prefix = "/".join(sub_parts)
        if prefix in files:
            single = files[prefix]
        else:
            files = {rel[len(prefix) + 1:]: f for rel, f in files.items() if rel.startswith(prefix + "/")}
    parent = ensure_dir(container_dir, mount.parts[:-1], what=f'mountPath "{mount.mount_path}"')
    if single is not None:
        build = lambda path: create_file(path, single.data, single.mode)  # noqa: E731
        mount.files = [("", single.key)]
    else:
        build = lambda path: _write_tree(path, files, _dir_mode(content))  # noqa: E731
        mount.files = [(rel, f.key) for rel, f in files.items()]
    mount.path = replace_entry(parent, mount.parts[-1], build)


def _link_mount(container_dir: str, mount: _Mount, link: vols.Link, sub_parts: tuple[str, ...],
                workspace: Workspace, namespace: str, pod_name: str) -> None:
    target = link.target
    if link.kind == "emptyDir":
        base = workspace.ensure_volume(namespace, pod_name, mount.volume)
        target = base
        if sub_parts:
            candidate = os.path.join(base, *sub_parts)
            if os.path.lexists(candidate) and not os.path.isdir(candidate):
                if not within(os.path.realpath(candidate), os.path.realpath(base)):
                    raise config_error(f'subPath of volumeMount "{mount.volume}" leads out of the volume',
                                       errors.BAD_PATH)
                target = candidate
            else:
                target = ensure_dir(base, sub_parts, what=f'subPath of volumeMount "{mount.volume}"')
    elif sub_parts:
        target = os.path.join(target, *sub_parts)
        if os.path.lexists(target) and not within(os.path.realpath(target), os.path.realpath(link.target)):
            raise config_error(f'subPath of volumeMount "{mount.volume}" leads out of the volume', errors.BAD_PATH)
    parent = ensure_dir(container_dir, mount.parts[:-1], what=f'mountPath "{mount.mount_path}"')
    mount.link = vols.Link(link.kind, target)
    mount.path = replace_entry(parent, mount.parts[-1], lambda path: os.symlink(target, path))


def _make_executable(script: str, container_dir: str) -> None:
    """Execute bits where the script has read bits, for a copy we wrote (never through a link)."""
    real = os.path.realpath(script)
    if real != script or not within(real, os.path.realpath(container_dir)):
        return  # inside a link mount: the file is not ours to change
    st = os.lstat(script)
    if stat.S_ISREG(st.st_mode):
        mode = stat.S_IMODE(st.st_mode)
        os.chmod(script, mode | ((mode & 0o444) >> 2))


def _make_read_only(path: str, skip: set[str]) -> None:
    """Drop the write bits of a copied mount, leaving alone the mounts nested in it (``skip``)."""
    entries = [path]
    if stat.S_ISDIR(os.lstat(path).st_mode):
        for top, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
            entries.extend(os.path.join(top, name) for name in dirs + files if os.path.join(top, name) not in skip)
    for entry in reversed(entries):  # contents before their directory
        _drop_write(entry)


def _drop_write(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)


# --- the script -----------------------------------------------------------------------

def _script(image: str, container: str, volumes: dict, mounts: list[_Mount]) -> str | None:
    head, has_key, key = image.partition("/")
    mount = next((m for m in sorted(mounts, key=lambda m: m.mount_path) if m.volume == head), None)
    if mount is None:
        if head in volumes and not has_key:
            raise config_error(f'image "{image}" names volume "{head}", which container "{container}" does not'
                               " mount", errors.SCRIPT)
        return None
    files = mount.files if mount.files is not None else _listing(mount.path)
    names = ", ".join(rel or os.path.basename(mount.path) for rel, _ in files) or "none"
    if has_key:
        chosen = [rel for rel, k in files if rel == key] or [rel for rel, k in files if k == key]
        if not chosen and mount.files is None:  # a link: any file under it, by relative path
            try:
                parts = relative_parts(key, f'script of image "{image}"')
            except WorkspaceError as exc:
                raise config_error(str(exc), errors.BAD_PATH) from None
            if parts and os.path.isfile(os.path.join(mount.path, *parts)):
                chosen = ["/".join(parts)]
        if len(chosen) != 1:
            raise config_error(f'image "{image}": volume "{head}" has no single file "{key}" (files: {names})',
                               errors.SCRIPT)
        rel = chosen[0]
    elif len(files) == 1:
        rel = files[0][0]
    elif not files:
        raise ConfigError(errors.CREATE_CONTAINER_CONFIG_ERROR,
                          f'image "{image}" names volume "{head}", which has no files', cause=errors.SCRIPT,
                          retryable=True)
    else:
        raise config_error(f'image "{image}" names volume "{head}", which has several files ({names});'
                           f' name one as image: {head}/<file>', errors.SCRIPT)
    return os.path.join(mount.path, rel) if rel else mount.path


def _listing(path: str) -> list[tuple[str, str]]:
    """The files a link mount offers as scripts: itself when it is a file, else its top-level files."""
    if os.path.isfile(path):
        return [("", "")]
    try:
        with os.scandir(path) as entries:
            return sorted((e.name, e.name) for e in entries if e.is_file())
    except OSError:
        return []
