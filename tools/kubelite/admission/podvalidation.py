"""Pod validation: a PodSpec's field errors, and what a pod update may not change.

Owns `validate_pod_spec` (containers, volumes and mounts, env names, ports,
restartPolicy, activeDeadlineSeconds, tolerations) and `validate_pod_update`
(spec immutable but for images, activeDeadlineSeconds, tolerations added,
terminationGracePeriodSeconds), in upstream's wording.  Pure: no store.
"""

from __future__ import annotations

import copy
from typing import Any

from .fielderrors import ENV_NAME_RE, FieldError, label_errors, supported

_RESTART_POLICIES = ("Always", "OnFailure", "Never")


def _validate_container(c: Any, path: str, volumes: set[str], seen: set[str]) -> list[FieldError]:
    if not isinstance(c, dict):
        return [FieldError(path, "Invalid", str(c), "must be an object")]
    errors: list[FieldError] = []
    name = c.get("name")
    if not name:
        errors.append(FieldError(f"{path}.name", "Required"))
    else:
        errors += label_errors(f"{path}.name", name)
        if name in seen:
            errors.append(FieldError(f"{path}.name", "Duplicate", name))
        seen.add(name)
    if not c.get("image"):
        errors.append(FieldError(f"{path}.image", "Required"))
    mount_paths: set[str] = set()
    for i, m in enumerate(c.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{i}]"
        if not m.get("name"):
            errors.append(FieldError(f"{mpath}.name", "Required"))
        elif m["name"] not in volumes:
            errors.append(FieldError(f"{mpath}.name", "NotFound", m["name"]))
        mount_path = m.get("mountPath")
        if not mount_path:
            errors.append(FieldError(f"{mpath}.mountPath", "Required"))
        elif mount_path in mount_paths:
            errors.append(FieldError(f"{mpath}.mountPath", "Invalid", mount_path, "must be unique"))
        else:
            mount_paths.add(mount_path)
    env_names = set()
    for i, env in enumerate(c.get("env") or []):
        env_name = env.get("name")
        if not env_name:
            errors.append(FieldError(f"{path}.env[{i}].name", "Required"))
        elif not ENV_NAME_RE.match(env_name):
            errors.append(FieldError(
                f"{path}.env[{i}].name", "Invalid", env_name,
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.', and must not start with a digit"))
        env_names.add(env_name)
    for i, port in enumerate(c.get("ports") or []):
        number = port.get("containerPort")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            errors.append(FieldError(f"{path}.ports[{i}].containerPort", "Invalid", number,
                                     "must be between 1 and 65535, inclusive"))
    return errors


def validate_pod_spec(spec: Any, path: str = "spec") -> list[FieldError]:
    """Field errors of a (defaulted) PodSpec; empty when valid."""
    if not isinstance(spec, dict):
        return [FieldError(path, "Required")]
    errors: list[FieldError] = []
    volumes: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        name = v.get("name") if isinstance(v, dict) else None
        if not name:
            errors.append(FieldError(f"{path}.volumes[{i}].name", "Required"))
            continue
        errors += label_errors(f"{path}.volumes[{i}].name", name)
        if name in volumes:
            errors.append(FieldError(f"{path}.volumes[{i}].name", "Duplicate", name))
        volumes.add(name)
    containers = spec.get("containers")
    if not containers:
        errors.append(FieldError(f"{path}.containers", "Required"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            errors += _validate_container(c, f"{path}.{key}[{i}]", volumes, seen)
    policy = spec.get("restartPolicy")
    if policy not in _RESTART_POLICIES:
        errors.append(FieldError(f"{path}.restartPolicy", "NotSupported", policy,
                                 supported(_RESTART_POLICIES)))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
        errors.append(FieldError(f"{path}.activeDeadlineSeconds", "Invalid", deadline,
                                 "must be between 1 and 2147483647, inclusive"))
    for i, t in enumerate(spec.get("tolerations") or []):
        operator = t.get("operator") or "Equal"
        if operator not in ("Equal", "Exists"):
            errors.append(FieldError(f"{path}.tolerations[{i}].operator", "NotSupported",
                                     operator, supported(("Equal", "Exists"))))
        elif operator == "Exists" and t.get("value"):
            errors.append(FieldError(f"{path}.tolerations[{i}].operator", "Invalid", t["value"],
                                     "value must be empty when `operator` is 'Exists'"))
        elif not t.get("key") and operator != "Exists":
            errors.append(FieldError(f"{path}.tolerations[{i}].operator", "Invalid", operator,
                                     "operator must be Exists when `key` is empty, which means "
                                     "\"match all values and all keys\""))
    return errors


_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def _changed_fields(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_fields(old.get(key), new.get(key), f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += _changed_fields(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [path]


def _toleration_id(t: dict) -> tuple:
    return (t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "",
            t.get("effect") or "")


def validate_pod_update(old: dict, new: dict) -> list[FieldError]:
    old_spec = old.get("spec") or {}
    new_spec = new.get("spec") or {}
    errors: list[FieldError] = []

    old_deadline = old_spec.get("activeDeadlineSeconds")
    new_deadline = new_spec.get("activeDeadlineSeconds")
    if old_deadline is not None:
        if new_deadline is None:
            errors.append(FieldError("spec.activeDeadlineSeconds", "Invalid", None,
                                     "must not update from a positive integer to nil value"))
        elif isinstance(new_deadline, int) and new_deadline > old_deadline:
            errors.append(FieldError("spec.activeDeadlineSeconds", "Invalid", new_deadline,
                                     "must be less than or equal to previous value"))

    new_ids = {_toleration_id(t): t for t in new_spec.get("tolerations") or []}
    for t in old_spec.get("tolerations") or []:
        match = new_ids.get(_toleration_id(t))
        if match is None:
            errors.append(FieldError("spec.tolerations", "Forbidden", detail=(
                "existing toleration can not be modified except its tolerationSeconds")))
            break
        old_seconds, new_seconds = t.get("tolerationSeconds"), match.get("tolerationSeconds")
        if old_seconds is not None and (new_seconds is None or new_seconds > old_seconds):
            errors.append(FieldError("spec.tolerations", "Forbidden", detail=(
                "existing toleration can not be modified except its tolerationSeconds; "
                "tolerationSeconds may only be decreased")))
            break

    # Compare the rest of the spec with the mutable fields carried over from old.
    comparable = copy.deepcopy(new_spec)
    for key in ("containers", "initContainers"):
        old_list = old_spec.get(key) or []
        new_list = comparable.get(key) or []
        if len(old_list) == len(new_list):
            for o, n in zip(old_list, new_list):
                if isinstance(o, dict) and isinstance(n, dict) and "image" in o:
                    n["image"] = o["image"]
    for key in ("activeDeadlineSeconds", "tolerations"):
        if key in old_spec:
            comparable[key] = copy.deepcopy(old_spec[key])
        else:
            comparable.pop(key, None)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if (isinstance(old_grace, int) and old_grace < 0
            and new_spec.get("terminationGracePeriodSeconds") == 1):
        comparable["terminationGracePeriodSeconds"] = old_grace
    changed = _changed_fields(old_spec, comparable, "spec")
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        errors.append(FieldError("spec", "Forbidden",
                                 detail=f"{_POD_UPDATE_FORBIDDEN}\n  changed: {shown}"))
    return errors
