"""A container's environment, built as the kubelet builds it, on top of vkcmd's own.

Order (later wins): ``base_env`` (vkcmd's environment), ``HOSTNAME`` = pod
name (and ``HOME`` when absent), ``envFrom`` sources in order, then ``env``
entries in order. An ``env`` value expands ``$(VAR)`` from what is defined so
far, and ``~``/``$HOME`` to the vkcmd user's home; ``valueFrom`` values are used
as they are. ``envFrom`` keys that are not valid variable names are skipped and
reported, as the kubelet reports them (event ``InvalidEnvironmentVariableNames``).
Values from Secrets are never logged nor put into messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vkcmd.pods import errors
from vkcmd.pods.downward import FieldError, field_value, resource_value
from vkcmd.pods.errors import config_error
from vkcmd.pods.expand import expand_env_value
from vkcmd.pods.resolver import Resolver

_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


@dataclass(frozen=True)
class StagingEvent:
    """An event the caller should post on the pod (type Warning), e.g. skipped env names."""

    reason: str
    message: str


@dataclass
class Environment:
    env: dict[str, str]
    skipped: list[str] = field(default_factory=list)
    events: list[StagingEvent] = field(default_factory=list)


def is_env_var_name(name: str) -> bool:
    """The kubelet's (classic) rule for environment variable names."""
    return bool(_ENV_VAR_NAME.fullmatch(name))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


class _Objects:
    """ConfigMaps and Secrets fetched once per staging, with the kubelet's messages when missing."""

    def __init__(self, resolver: Resolver, namespace: str) -> None:
        self.resolver = resolver
        self.namespace = namespace
        self._cache: dict[tuple[str, str], dict | None] = {}

    def get(self, kind: str, name: str, optional: bool) -> dict | None:
        """The object's data as text (decoded for Secrets); None when it is missing and optional."""
        if (kind, name) not in self._cache:
            if kind == "configmap":
                obj = self.resolver.config_map(self.namespace, name)
                data = None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}
            else:
                obj = self.resolver.secret(self.namespace, name)
                data = None if obj is None else self._secret_data(name, obj)
            self._cache[(kind, name)] = data
        data = self._cache[(kind, name)]
        if data is None and not optional:
            raise config_error(f'{kind} "{name}" not found', errors.NOT_FOUND)
        return data

    def _secret_data(self, name: str, obj: dict) -> dict[str, str]:
        data = {}
        for key, value in (obj.get("data") or {}).items():
            try:
                data[key] = _text(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError, TypeError):
                raise config_error(f"key {key} in Secret {self.namespace}/{name} is not valid base64",
                                   errors.INVALID_DATA) from None
        data.update({key: str(value) for key, value in (obj.get("stringData") or {}).items()})
        return data


def build_env(pod: dict, container: dict, resolver: Resolver, node_facts: dict, *, home: str,
              base_env: Mapping[str, str]) -> Environment:
    """The environment of ``container``; :class:`ConfigError` names what is missing."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    objects = _Objects(resolver, namespace)
    env = dict(base_env)
    env["HOSTNAME"] = meta.get("name", "")
    env.setdefault("HOME", home)
    result = Environment(env)

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if source.get("configMapRef") is not None:
            ref, kind, label = source["configMapRef"], "configmap", "configMap"
        elif source.get("secretRef") is not None:
            ref, kind, label = source["secretRef"], "secret", "secret"
        else:
            raise config_error(f"envFrom entry {sorted(source)} names neither a configMapRef nor a secretRef")
        name = ref.get("name", "")
        data = objects.get(kind, name, bool(ref.get("optional")))
        if data is None:
            continue
        invalid = []
        for key in sorted(data):
            var = prefix + key
            if is_env_var_name(var):
                env[var] = data[key]
            else:
                invalid.append(var)
        if invalid:
            result.skipped.extend(invalid)
            result.events.append(StagingEvent(
                "InvalidEnvironmentVariableNames",
                f"Keys [{', '.join(invalid)}] from the EnvFrom {label} {namespace}/{name} were skipped"
                " since they are considered invalid environment variable names."))

    for var in container.get("env") or []:
        name = var.get("name", "")
        value = var.get("value") or ""
        source = var.get("valueFrom")
        if value or not source:
            env[name] = expand_env_value(value, env, home)
            continue
        try:
            if source.get("fieldRef") is not None:
                env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""), node_facts)
            elif source.get("resourceFieldRef") is not None:
                env[name] = resource_value(pod, container.get("name", ""), source["resourceFieldRef"], node_facts)
            elif source.get("configMapKeyRef") is not None or source.get("secretKeyRef") is not None:
                is_cm = source.get("configMapKeyRef") is not None
                ref = source["configMapKeyRef"] if is_cm else source["secretKeyRef"]
                optional = bool(ref.get("optional"))
                data = objects.get("configmap" if is_cm else "secret", ref.get("name", ""), optional)
                key = ref.get("key", "")
                if data is None:
                    continue
                if key not in data:
                    if optional:
                        continue
                    raise config_error(f"couldn't find key {key} in {'ConfigMap' if is_cm else 'Secret'}"
                                       f" {namespace}/{ref.get('name', '')}", errors.KEY_NOT_FOUND)
                env[name] = data[key]
            else:
                raise config_error(f"env {name}: valueFrom names no supported source")
        except FieldError as exc:
            raise config_error(f"env {name}: {exc}") from None

    bad = sorted(name for name, value in env.items() if "\0" in value or "\0" in name or "=" in name or not name)
    if bad:
        raise config_error(f"environment variables {bad} cannot be passed to a process"
                           " (empty name, '=' in the name, or a NUL byte)")
    return result
