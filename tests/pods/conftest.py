"""Fixtures for staging tests: a fresh workspace and home per test, the shared examples, a stage() helper."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from vkcmd.pods import StaticResolver, Workspace, stage_container

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = next((p for p in (REPO / "examples", Path("/work/shared/examples")) if p.is_dir()), REPO / "examples")

BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def load_example(name: str) -> tuple[dict, list[dict]]:
    """(the first Pod or Deployment pod template as a Pod, the other objects) of an example file."""
    if not (EXAMPLES / name).is_file():
        pytest.skip(f"example {name} not available")
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    pod = None
    objects = []
    for doc in docs:
        if doc["kind"] == "Pod" and pod is None:
            pod = doc
        elif doc["kind"] == "Deployment" and pod is None:
            template = doc["spec"]["template"]
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": dict(template.get("metadata") or {}, name=doc["metadata"]["name"] + "-abc12"),
                   "spec": template["spec"]}
        else:
            objects.append(doc)
    pod = copy.deepcopy(pod)
    pod["metadata"].setdefault("namespace", "default")
    pod["metadata"].setdefault("uid", "0b1c2d3e-0000-4000-8000-000000000001")
    pod["spec"].setdefault("nodeName", "vk-test")
    return pod, objects


def make_pod(containers: list[dict], volumes: list[dict] | None = None, *, name: str = "p1",
             namespace: str = "ns1", **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1234", **meta},
            "spec": {"nodeName": "vk-test", "containers": containers, "volumes": volumes or []},
            "status": {}}


@pytest.fixture
def home(tmp_path) -> str:
    path = tmp_path / "home"
    path.mkdir()
    return str(path)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "root")


@pytest.fixture
def stage(workspace, home):
    """stage(pod, resolver=None, container=0, **kw) -> StagedContainer."""

    def run(pod, resolver=None, container=0, base_env=None):
        spec_container = (pod["spec"]["containers"][container] if isinstance(container, int)
                          else next(c for c in pod["spec"]["containers"] if c["name"] == container))
        return stage_container(pod, spec_container, workspace, resolver or StaticResolver(), home=home,
                               base_env=BASE_ENV if base_env is None else base_env)

    return run
