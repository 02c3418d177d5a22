"""Pod volumes → what to put on disk: a set of files (configMap, secret, projected, downwardAPI) or a link.

Computing a volume's content reads objects through the :class:`Resolver` and
writes nothing; staging writes it afterwards. Failures are :class:`ConfigError`
with the kubelet's ``MountVolume.SetUp failed for volume "v" : ...`` messages.
Secret data is marked so that its files are written owner-only and never logged.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass, field

from vkcmd.pods import errors
from vkcmd.pods.downward import FieldError, field_value, resource_value
from vkcmd.pods.errors import ConfigError, WorkspaceError, config_error
from vkcmd.pods.paths import relative_parts
from vkcmd.pods.resolver import Resolver

#: Kinds of change the resolver reports for tokens: one fetched for the first time (name: the service
#: account), and one renewed (name: the pod it is bound to, whose running containers get the new file).
SERVICE_ACCOUNT_TOKEN = "ServiceAccountToken"
SERVICE_ACCOUNT_TOKEN_RENEWED = "ServiceAccountTokenRenewed"
SUPPORTED = ("configMap", "secret", "emptyDir", "hostPath", "projected", "downwardAPI")
DEFAULT_MODE = 0o644  # the API's default for defaultMode (420)
SECRET_MODE_MASK = 0o700  # secret data: the owner's bits of a mode are honoured, never group's or others'


@dataclass(frozen=True)
class File:
    """One file of a volume: its bytes, its mode, and the key (or field) it came from."""

    data: bytes = field(repr=False)
    mode: int
    key: str
    secret: bool = False


@dataclass(frozen=True)
class Files:
    """A volume whose content is copied into each mount: relative path → :class:`File`."""

    kind: str
    files: dict[str, File]
    secret: bool = False


@dataclass(frozen=True)
class Link:
    """A volume that is linked, not copied: an emptyDir under the pod directory, or a host path."""

    kind: str
    target: str


@dataclass
class Context:
    """What computing a volume needs besides the volume itself."""

    pod: dict
    namespace: str
    container_name: str
    resolver: Resolver
    node_facts: dict
    empty_dir: str  # the directory that holds this pod's emptyDir volumes (``<pod>/volumes``)


def volume_type(volume: dict) -> str:
    """The source type of a volume (its one key besides ``name``); ConfigError when it has none or several."""
    kinds = [key for key in volume if key != "name"]
    if len(kinds) != 1:
        raise config_error(f'volume "{volume.get("name")}" must have exactly one source, has {kinds or "none"}',
                           errors.INVALID_SPEC)
    return kinds[0]


def content(volume: dict, ctx: Context) -> Files | Link:
    """The content of ``volume`` for the pod in ``ctx``."""
    name = volume.get("name", "")
    kind = volume_type(volume)
    source = volume.get(kind) or {}
    if kind not in SUPPORTED:
        raise config_error(f'volume "{name}" has type {kind}, which vkcmd does not support'
                           f' (supported: {", ".join(SUPPORTED)})', errors.UNSUPPORTED_VOLUME)
    if kind == "emptyDir":
        return Link(kind, os.path.join(ctx.empty_dir, name))
    if kind == "hostPath":
        return Link(kind, _host_path(name, source))
    builder = _Builder(name, kind, ctx)
    default_mode = _mode(name, source.get("defaultMode"), DEFAULT_MODE)
    if kind == "configMap":
        builder.config_map(source, default_mode)
    elif kind == "secret":
        builder.secret(source, default_mode, name_key="secretName")
    elif kind == "downwardAPI":
        builder.downward_api(source, default_mode)
    else:
        builder.projected(source, default_mode)
    return builder.result()


def token_files(volume: dict, ctx: Context) -> dict[str, File]:
    """The serviceAccountToken files of a projected ``volume`` (path in the volume → :class:`File`), {} for
    any other volume: what is rewritten in a running container when its token is renewed."""
    source = volume.get("projected")
    if not isinstance(source, dict):
        return {}
    builder = _Builder(volume.get("name", ""), "projected", ctx)
    for entry in source.get("sources") or []:
        if isinstance(entry, dict) and entry.get("serviceAccountToken") is not None:
            builder.service_account_token(entry["serviceAccountToken"])
    return builder.result().files


def _fail(volume: str, message: str, cause: str) -> ConfigError:
    return config_error(f'MountVolume.SetUp failed for volume "{volume}" : {message}', cause)


def _mode(volume: str, value: object, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise _fail(volume, f"invalid mode {value!r}: must be an integer from 0 to 0777 (511)", errors.INVALID_SPEC)
    return value


def _host_path(volume: str, source: dict) -> str:
    path = source.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise _fail(volume, f"hostPath {path!r} must be an absolute path", errors.INVALID_SPEC)
    path = os.path.normpath(path)
    checks = {
        "Directory": (stat.S_ISDIR, "is not a directory"),
        "File": (stat.S_ISREG, "is not a file"),
        "Socket": (stat.S_ISSOCK, "is not a socket file"),
        "CharDevice": (stat.S_ISCHR, "is not a character device"),
        "BlockDevice": (stat.S_ISBLK, "is not a block device"),
    }
    host_type = source.get("type") or ""
    if host_type in checks:
        test, what = checks[host_type]
        try:
            ok = test(os.stat(path).st_mode)
        except OSError:
            ok = False
        if not ok:
            raise _fail(volume, f"hostPath type check failed: {path} {what}", errors.HOST_PATH_TYPE)
    elif host_type not in ("", "DirectoryOrCreate", "FileOrCreate"):
        raise _fail(volume, f"unknown hostPath type {host_type!r}", errors.INVALID_SPEC)
    return path


def _decode(volume: str, what: str, key: str, value: object) -> bytes:
    try:
        return base64.b64decode(value if isinstance(value, (str, bytes)) else "", validate=True)
    except (binascii.Error, ValueError):
        raise _fail(volume, f'{what} key "{key}" is not valid base64', errors.INVALID_DATA) from None


class _Builder:
    """Collects the files of one volume, checking paths as they come."""

    def __init__(self, volume: str, kind: str, ctx: Context) -> None:
        self.volume = volume
        self.kind = kind
        self.ctx = ctx
        self.files: dict[str, File] = {}
        self.has_secret = False

    def result(self) -> Files:
        paths = set(self.files)
        for path in paths:
            parent = path
            while "/" in parent:
                parent = parent.rsplit("/", 1)[0]
                if parent in paths:
                    raise _fail(self.volume, f'path "{parent}" is both a file and a directory', errors.BAD_PATH)
        return Files(self.kind, dict(sorted(self.files.items())), self.has_secret)

    def add(self, path: str, data: bytes, mode: int, key: str, secret: bool = False) -> None:
        try:
            parts = relative_parts(path, "path")
        except WorkspaceError as exc:
            raise _fail(self.volume, str(exc), errors.BAD_PATH) from None
        if not parts:
            raise _fail(self.volume, f"invalid path {path!r} for key {key!r}", errors.BAD_PATH)
        if secret:
            mode &= SECRET_MODE_MASK
            self.has_secret = True
        self.files["/".join(parts)] = File(data, mode, key, secret)

    # --- sources ------------------------------------------------------------

    def _items(self, source: dict, data: dict[str, bytes], default_mode: int, optional: bool, secret: bool,
               missing_key: str) -> None:
        items = source.get("items")
        if not items:
            for key in sorted(data):
                self.add(key, data[key], default_mode, key, secret)
            return
        for item in items:
            key = item.get("key", "")
            if key not in data:
                if optional:
                    continue
                raise _fail(self.volume, missing_key.format(key=key), errors.KEY_NOT_FOUND)
            self.add(item.get("path") or key, data[key], _mode(self.volume, item.get("mode"), default_mode), key,
                     secret)

    def config_map(self, source: dict, default_mode: int) -> None:
        name = source.get("name", "")
        optional = bool(source.get("optional"))
        obj = self.ctx.resolver.config_map(self.ctx.namespace, name)
        if obj is None:
            if optional:
                return
            raise _fail(self.volume, f'configmap "{name}" not found', errors.NOT_FOUND)
        data = {key: _decode(self.volume, f'configmap "{name}"', key, value)
                for key, value in (obj.get("binaryData") or {}).items()}
        data.update({key: str(value).encode() for key, value in (obj.get("data") or {}).items()})
        self._items(source, data, default_mode, optional, False,
                    "configmap references non-existent config key: {key}")

    def secret(self, source: dict, default_mode: int, name_key: str) -> None:
        name = source.get(name_key, "")
        optional = bool(source.get("optional"))
        obj = self.ctx.resolver.secret(self.ctx.namespace, name)
        if obj is None:
            if optional:
                return
            raise _fail(self.volume, f'secret "{name}" not found', errors.NOT_FOUND)
        self.has_secret = True
        data = {key: _decode(self.volume, f'secret "{name}"', key, value)
                for key, value in (obj.get("data") or {}).items()}
        data.update({key: str(value).encode() for key, value in (obj.get("stringData") or {}).items()})
        self._items(source, data, default_mode, optional, True, "references non-existent secret key: {key}")

    def downward_api(self, source: dict, default_mode: int) -> None:
        for item in source.get("items") or []:
            path = item.get("path", "")
            try:
                if item.get("fieldRef"):
                    key = item["fieldRef"].get("fieldPath", "")
                    value = field_value(self.ctx.pod, key, self.ctx.node_facts)
                elif item.get("resourceFieldRef"):
                    ref = item["resourceFieldRef"]
                    key = ref.get("resource", "")
                    if not ref.get("containerName"):
                        raise FieldError(f"resourceFieldRef {key} for path {path!r} must name a container")
                    value = resource_value(self.ctx.pod, self.ctx.container_name, ref, self.ctx.node_facts)
                else:
                    raise FieldError(f"item {path!r} has neither fieldRef nor resourceFieldRef")
            except FieldError as exc:
                raise _fail(self.volume, str(exc), errors.INVALID_SPEC) from None
            self.add(path, value.encode(), _mode(self.volume, item.get("mode"), default_mode), key)

    def service_account_token(self, source: dict) -> None:
        spec = self.ctx.pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        audiences = [source["audience"]] if source.get("audience") else []
        expiration = source.get("expirationSeconds") or 3600
        try:
            token = self.ctx.resolver.service_account_token(self.ctx.namespace, account, audiences,
                                                            int(expiration), self.ctx.pod)
        except errors.ConfigError as exc:
            if exc.cause != errors.NOT_YET:
                raise _fail(self.volume, f"failed to fetch token: {exc}", errors.TOKEN_FAILED) from None
            raise  # asked for in the background: the container waits until it comes
        except Exception as exc:  # the resolver's failure, whatever it is, keeps the container waiting
            raise _fail(self.volume, f"failed to fetch token: {exc}", errors.TOKEN_FAILED) from None
        self.add(source.get("path", ""), token.encode(), 0o600, "token", secret=True)

    def projected(self, source: dict, default_mode: int) -> None:
        for entry in source.get("sources") or []:
            if entry.get("configMap") is not None:
                self.config_map(entry["configMap"], default_mode)
            elif entry.get("secret") is not None:
                self.secret(entry["secret"], default_mode, name_key="name")
            elif entry.get("downwardAPI") is not None:
                self.downward_api(entry["downwardAPI"], default_mode)
            elif entry.get("serviceAccountToken") is not None:
                self.service_account_token(entry["serviceAccountToken"])
            else:
                kinds = ", ".join(sorted(entry)) or "none"
                raise _fail(self.volume, f"unsupported projected source ({kinds})", errors.UNSUPPORTED_VOLUME)
