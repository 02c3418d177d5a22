"""The container environment, built in the kubelet's order with the kubelet's messages."""

import base64
import os

import pytest

from vkcmd.pods import ConfigError, StaticResolver
from vkcmd.pods import errors

from .conftest import make_pod

SECRET_VALUE = "hunter2-never-in-a-message"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def cm(name, data):
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns1"}, "data": data}


def secret(name, data):
    return {"kind": "Secret", "metadata": {"name": name, "namespace": "ns1"},
            "data": {k: b64(v) for k, v in data.items()}}


def pod_with(env=None, env_from=None, **container):
    c = {"name": "c1", "image": "none", "command": ["true"], "env": env or [], "envFrom": env_from or [], **container}
    return make_pod([c, {"name": "side", "image": "none", "command": ["true"],
                         "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}}],
                    labels={"app": "web", "tier": "front"}, annotations={"owner": "ops"})


def ref(kind, name, key, optional=None):
    body = {"name": name, "key": key}
    if optional is not None:
        body["optional"] = optional
    return {"valueFrom": {kind: body}}


def test_base_env_hostname_and_home(stage, home):
    staged = stage(pod_with(), base_env={"PATH": "/bin", "HOSTNAME": "login01", "KEEP": "1"})
    assert staged.env["PATH"] == "/bin" and staged.env["KEEP"] == "1"
    assert staged.env["HOSTNAME"] == "p1"
    assert staged.env["HOME"] == home
    staged = stage(pod_with(), base_env={"HOME": "/custom"})
    assert staged.env["HOME"] == "/custom"


def test_values_expand_kubelet_references_in_order(stage, home):
    env = [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-b"},
        {"name": "C", "value": "$(D)"},          # D is defined later: stays a reference
        {"name": "D", "value": "d"},
        {"name": "E", "value": "$$(A)"},
        {"name": "F", "value": "$(FROM_BASE)/x"},
        {"name": "G", "value": "~/work:$HOME/bin:$OTHER"},
        {"name": "H", "value": ""},
        {"name": "A", "value": "$(A)$(A)"},      # redefinition sees the earlier value
    ]
    staged = stage(pod_with(env), base_env={"FROM_BASE": "/base"})
    e = staged.env
    assert (e["B"], e["C"], e["D"], e["E"], e["F"]) == ("a-b", "$(D)", "d", "$(A)", "/base/x")
    assert e["G"] == f"{home}/work:{home}/bin:$OTHER"
    assert e["H"] == "" and e["A"] == "aa"


@pytest.mark.parametrize("path, expected", [
    ("metadata.name", "p1"), ("metadata.namespace", "ns1"), ("metadata.uid", "uid-1234"),
    ("metadata.labels['app']", "web"), ("metadata.labels['missing']", ""), ("metadata.annotations['owner']", "ops"),
    ("metadata.labels", 'app="web"\ntier="front"'), ("spec.nodeName", "vk-test"),
    ("spec.serviceAccountName", "robot"), ("status.hostIP", "10.0.0.5"), ("status.podIP", "10.0.0.5"),
    ("status.podIPs", "10.0.0.5"),
])
def test_field_refs(stage, path, expected):
    pod = pod_with([{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}])
    pod["spec"]["serviceAccountName"] = "robot"
    facts = {"nodeName": "vk-test", "hostIP": "10.0.0.5", "podIP": "10.0.0.5", "podIPs": ["10.0.0.5"],
             "allocatable": {"cpu": "8", "memory": "16Gi"}}
    assert stage(pod, StaticResolver(node_facts=facts)).env["V"] == expected


def test_unsupported_field_ref(stage):
    with pytest.raises(ConfigError, match="env V: unsupported fieldPath: spec.nope"):
        stage(pod_with([{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]))


@pytest.mark.parametrize("ref_body, expected", [
    ({"resource": "limits.memory", "divisor": "1Mi"}, "64"),
    ({"resource": "limits.memory"}, str(64 * 2**20)),
    ({"resource": "limits.cpu", "divisor": "1m"}, "500"),
    ({"resource": "limits.cpu"}, "1"),                          # 500m rounds up to 1 core
    ({"resource": "requests.cpu", "divisor": "1m"}, "250"),
    ({"resource": "requests.memory"}, str(64 * 2**20)),         # defaults to the limit, as the API does
    ({"resource": "limits.cpu", "containerName": "side", "divisor": "100m"}, "15"),
    ({"resource": "limits.memory", "containerName": "side", "divisor": "1Gi"}, "1"),
    ({"resource": "limits.ephemeral-storage", "divisor": "1Gi"}, "100"),  # node allocatable
])
def test_resource_field_refs(stage, ref_body, expected):
    pod = pod_with([{"name": "V", "valueFrom": {"resourceFieldRef": ref_body}}],
                   resources={"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}})
    assert stage(pod).env["V"] == expected


def test_resource_field_ref_defaults_to_node_allocatable(stage):
    pod = pod_with([{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}])
    staged = stage(pod, StaticResolver(node_facts={"allocatable": {"cpu": "6", "memory": "2Gi"}}))
    assert (staged.env["CPU"], staged.env["MEM"], staged.env["REQ"]) == ("6", "2048", "0")


def test_unsupported_resource(stage):
    pod = pod_with([{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.hugepages-2Mi"}}}])
    with pytest.raises(ConfigError, match="unsupported container resource"):
        stage(pod)


def test_config_map_and_secret_key_refs(stage):
    env = [{"name": "G", **ref("configMapKeyRef", "greetings", "greeting")},
           {"name": "PW", **ref("secretKeyRef", "creds", "pw")}]
    staged = stage(pod_with(env), StaticResolver([cm("greetings", {"greeting": "bonjour"}),
                                                  secret("creds", {"pw": SECRET_VALUE})]))
    assert staged.env["G"] == "bonjour" and staged.env["PW"] == SECRET_VALUE


@pytest.mark.parametrize("env, objects, message, cause", [
    ([{"name": "G", **ref("configMapKeyRef", "greetings", "greeting")}], [],
     'configmap "greetings" not found', errors.NOT_FOUND),
    ([{"name": "G", **ref("configMapKeyRef", "greetings", "nope")}], [cm("greetings", {"greeting": "x"})],
     "couldn't find key nope in ConfigMap ns1/greetings", errors.KEY_NOT_FOUND),
    ([{"name": "P", **ref("secretKeyRef", "creds", "pw")}], [],
     'secret "creds" not found', errors.NOT_FOUND),
    ([{"name": "P", **ref("secretKeyRef", "creds", "nope")}], [secret("creds", {"pw": SECRET_VALUE})],
     "couldn't find key nope in Secret ns1/creds", errors.KEY_NOT_FOUND),
])
def test_missing_objects_and_keys_use_the_kubelet_messages(stage, env, objects, message, cause):
    with pytest.raises(ConfigError) as info:
        stage(pod_with(env), StaticResolver(objects))
    err = info.value
    assert (err.reason, err.message, err.cause, err.retryable) == ("CreateContainerConfigError", message, cause, True)
    assert SECRET_VALUE not in str(err)


def test_optional_refs_leave_the_variable_alone(stage):
    env = [{"name": "G", **ref("configMapKeyRef", "absent", "k", optional=True)},
           {"name": "H", **ref("configMapKeyRef", "present", "nope", optional=True)},
           {"name": "P", **ref("secretKeyRef", "absent", "k", optional=True)},
           {"name": "Q", **ref("secretKeyRef", "creds", "nope", optional=True)},
           {"name": "KEEP", **ref("configMapKeyRef", "absent", "k", optional=True)}]
    staged = stage(pod_with(env), StaticResolver([cm("present", {"k": "v"}), secret("creds", {"a": "b"})]),
                   base_env={"KEEP": "from-base"})
    assert not {"G", "H", "P", "Q"} & set(staged.env)
    assert staged.env["KEEP"] == "from-base"


def test_env_from_with_prefix_invalid_names_and_override_order(stage):
    env_from = [{"configMapRef": {"name": "settings"}},
                {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                {"secretRef": {"name": "creds"}, "prefix": "S_"},
                {"configMapRef": {"name": "absent", "optional": True}},
                {"configMapRef": {"name": "override"}}]
    env = [{"name": "MODE", "value": "from-env"}, {"name": "COPY", "value": "$(CFG_MODE)"}]
    resolver = StaticResolver([cm("settings", {"MODE": "debug", "LEVEL": "3", "bad key": "x", "1st": "y",
                                               "dotted.name": "ok"}),
                               cm("override", {"LEVEL": "9"}),
                               secret("creds", {"pw": SECRET_VALUE, "has space": "z"})])
    staged = stage(pod_with(env, env_from), resolver)
    e = staged.env
    assert e["MODE"] == "from-env" and e["CFG_MODE"] == "debug" and e["COPY"] == "debug"
    assert e["LEVEL"] == "9" and e["CFG_LEVEL"] == "3" and e["dotted.name"] == "ok"
    assert e["S_pw"] == SECRET_VALUE and e["CFG_1st"] == "y"
    assert staged.skipped_env == ["1st", "bad key", "CFG_bad key", "S_has space"]
    assert [(ev.reason, ev.message) for ev in staged.events] == [
        ("InvalidEnvironmentVariableNames", "Keys [1st, bad key] from the EnvFrom configMap ns1/settings were "
         "skipped since they are considered invalid environment variable names."),
        ("InvalidEnvironmentVariableNames", "Keys [CFG_bad key] from the EnvFrom configMap ns1/settings were "
         "skipped since they are considered invalid environment variable names."),
        ("InvalidEnvironmentVariableNames", "Keys [S_has space] from the EnvFrom secret ns1/creds were "
         "skipped since they are considered invalid environment variable names."),
    ]


@pytest.mark.parametrize("source, message", [
    ({"configMapRef": {"name": "absent"}}, 'configmap "absent" not found'),
    ({"secretRef": {"name": "absent"}}, 'secret "absent" not found'),
])
def test_env_from_missing(stage, source, message):
    with pytest.raises(ConfigError) as info:
        stage(pod_with(env_from=[source]))
    assert info.value.message == message and info.value.retryable


def test_nul_in_a_secret_value_is_refused_without_showing_it(stage):
    env = [{"name": "P", **ref("secretKeyRef", "creds", "pw")}]
    with pytest.raises(ConfigError) as info:
        stage(pod_with(env), StaticResolver([secret("creds", {"pw": SECRET_VALUE + "\0"})]))
    assert "['P']" in info.value.message and SECRET_VALUE not in info.value.message


def test_secret_value_with_invalid_utf8_round_trips(stage):
    raw = b"\xff\xfeok"
    obj = {"kind": "Secret", "metadata": {"name": "bin", "namespace": "ns1"},
           "data": {"b": base64.b64encode(raw).decode()}}
    staged = stage(pod_with([{"name": "B", **ref("secretKeyRef", "bin", "b")}]), StaticResolver([obj]))
    assert os.fsencode(staged.env["B"]) == raw
