"""The DefaultTolerationSeconds admission plugin: not-ready / unreachable NoExecute for 300 s.

Owns adding the two default tolerations a pod does not already cover.
"""

from __future__ import annotations

DEFAULT_TOLERATION_SECONDS = 300


def default_tolerations(pod: dict) -> None:
    spec = pod["spec"]
    tolerations = spec.get("tolerations") or []

    def covered(key: str) -> bool:
        return any((t.get("key") in (key, None, "")) and (t.get("effect") in ("NoExecute", None, ""))
                   for t in tolerations)

    added = []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not covered(key):
            added.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    if added:
        spec["tolerations"] = tolerations + added
