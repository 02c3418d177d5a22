"""Staging end to end: the shared examples, the script rule, argv and its expansion, real runs."""

import ast
import os
import stat
import subprocess
from pathlib import Path

import pytest

from vkcmd.pods import ConfigError, StaticResolver, Workspace, stage_container
from vkcmd.pods import errors

from .conftest import BASE_ENV, load_example, make_pod

REPO = Path(__file__).resolve().parents[2]


def run(staged, timeout=10):
    return subprocess.run(staged.argv, env=staged.env, cwd=staged.cwd, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- the shared examples ---------------------------------------------------------------

def test_stress_pod(stage, workspace):
    pod, objects = load_example("stress-pod.yaml")
    staged = stage(pod, StaticResolver(objects))
    cdir = workspace.container_dir("default", "p1", "c1")
    script = f"{cdir}/stress/job1/burn.sh"
    assert staged.argv == ["bash", script, "30", "2"]
    assert (staged.container_dir, staged.script, staged.image_id, staged.cwd) == (cdir, script, script,
                                                                                  f"{cdir}/stress/job1")
    assert open(script).read().startswith("#!/bin/bash")
    assert staged.memory_limit_bytes is None and staged.cpu_limit_cores is None
    quick = subprocess.run(["bash", script, "0", "1"], env=staged.env, cwd=staged.cwd, capture_output=True,
                           text=True, timeout=10)
    assert quick.returncode == 0 and quick.stdout == "burned 1 workers for 0 s\n"


def test_secret_pod(stage, workspace, home):
    pod, objects = load_example("secret-pod.yaml")
    staged = stage(pod, StaticResolver(objects))
    cdir = workspace.container_dir("default", "hello", "main")
    script = f"{cdir}/scripts/hello.sh"
    assert staged.argv == ["bash", script]
    env = staged.env
    assert (env["POD_NAME"], env["NODE_NAME"], env["GREETING"], env["WORKDIR"]) == ("hello", "vk-test", "bonjour",
                                                                                   f"{home}/work")
    assert mode_of(script) == 0o600 and mode_of(os.path.dirname(script)) == 0o700
    result = run(staged)
    assert result.returncode == 0
    assert result.stdout == f"hello from hello on vk-test, greeting=bonjour, home={home}/work\n"
    assert result.stderr == "this goes to stderr\n"


def test_deployment_pod(stage):
    pod, objects = load_example("deployment.yaml")
    staged = stage(pod, StaticResolver(objects))
    assert staged.argv == ["bash", f"{staged.container_dir}/bin/serve.sh"]
    assert staged.memory_limit_bytes == 256 * 2**20 and staged.cpu_limit_cores is None


def test_affinity_pod_runs_its_command_as_is(stage, workspace):
    pod, objects = load_example("affinity-pod.yaml")
    staged = stage(pod, StaticResolver(objects))
    assert staged.argv == ["sleep", "20"]
    assert staged.script is None and staged.image_id == "none"
    assert staged.cwd == staged.container_dir == workspace.container_dir("default", "placed", "c1")
    assert os.path.isdir(staged.cwd)


# --- the script rule --------------------------------------------------------------------------

def scripts_cm(data, name="scripts"):
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns1"}, "data": data}


def script_pod(image, command=None, args=None, items=None, read_only=False, sub_path=None):
    mount = {"name": "scripts", "mountPath": "job", "readOnly": read_only}
    if sub_path:
        mount["subPath"] = sub_path
    c = {"name": "c1", "image": image, "volumeMounts": [mount]}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    source = {"name": "scripts"}
    if items:
        source["items"] = items
    return make_pod([c], [{"name": "scripts", "configMap": source}])


TWO = {"a.sh": "#!/bin/sh\necho A \"$@\"\n", "b.sh": "#!/bin/sh\necho B \"$@\"\n"}


def test_several_files_and_no_key_named_lists_them(stage):
    with pytest.raises(ConfigError) as info:
        stage(script_pod("scripts", ["sh"]), StaticResolver([scripts_cm(TWO)]))
    assert info.value.message == ('image "scripts" names volume "scripts", which has several files (a.sh, b.sh);'
                                  " name one as image: scripts/<file>")
    assert info.value.cause == errors.SCRIPT and not info.value.retryable


def test_image_volume_slash_key_picks_one(stage):
    staged = stage(script_pod("scripts/b.sh", ["sh"], ["x"]), StaticResolver([scripts_cm(TWO)]))
    assert staged.argv == ["sh", f"{staged.container_dir}/job/b.sh", "x"]
    assert run(staged).stdout == "B x\n"


def test_image_key_may_name_the_key_or_the_item_path(stage):
    items = [{"key": "a.sh", "path": "bin/run-a"}, {"key": "b.sh", "path": "bin/run-b"}]
    resolver = StaticResolver([scripts_cm(TWO)])
    by_key = stage(script_pod("scripts/a.sh", ["sh"], items=items), resolver)
    by_path = stage(script_pod("scripts/bin/run-a", ["sh"], items=items), resolver)
    assert by_key.script == by_path.script == f"{by_key.container_dir}/job/bin/run-a"
    assert by_key.cwd == f"{by_key.container_dir}/job/bin"


def test_image_naming_a_missing_file_lists_the_files(stage):
    with pytest.raises(ConfigError, match=r'image "scripts/c.sh": volume "scripts" has no single file "c.sh" '
                                          r"\(files: a.sh, b.sh\)"):
        stage(script_pod("scripts/c.sh", ["sh"]), StaticResolver([scripts_cm(TWO)]))


def test_image_naming_an_empty_volume(stage):
    pod = script_pod("scripts", ["sh"])
    pod["spec"]["volumes"][0]["configMap"]["optional"] = True
    with pytest.raises(ConfigError, match="which has no files") as info:
        stage(pod)
    assert info.value.retryable


def test_image_naming_a_volume_the_container_does_not_mount(stage):
    pod = make_pod([{"name": "c1", "image": "tools", "command": ["sh"]}],
                   [{"name": "tools", "configMap": {"name": "scripts"}}])
    with pytest.raises(ConfigError, match='image "tools" names volume "tools", which container "c1" does not mount'):
        stage(pod, StaticResolver([scripts_cm(TWO)]))


def test_sub_path_file_is_the_script(stage):
    staged = stage(script_pod("scripts", ["sh"], sub_path="a.sh"), StaticResolver([scripts_cm(TWO)]))
    assert staged.script == f"{staged.container_dir}/job" and os.path.isfile(staged.script)
    assert run(staged).stdout == "A\n"


def test_no_command_executes_the_script_itself(stage):
    staged = stage(script_pod("scripts/a.sh", args=["one", "two words"]), StaticResolver([scripts_cm(TWO)]))
    assert staged.argv == [staged.script, "one", "two words"]
    assert mode_of(staged.script) == 0o755
    assert mode_of(os.path.join(os.path.dirname(staged.script), "b.sh")) == 0o644
    assert run(staged).stdout == "A one two words\n"


def test_no_command_read_only_script_is_executable_not_writable(stage):
    staged = stage(script_pod("scripts/a.sh", read_only=True), StaticResolver([scripts_cm(TWO)]))
    assert mode_of(staged.script) == 0o555
    assert run(staged).stdout == "A\n"


def test_no_command_respects_a_mode_without_read_bits(stage):
    items = [{"key": "a.sh", "path": "a.sh", "mode": 0o200}]
    staged = stage(script_pod("scripts", items=items), StaticResolver([scripts_cm(TWO)]))
    assert mode_of(staged.script) == 0o200


def test_host_path_script(stage, tmp_path):
    host = tmp_path / "opt"
    host.mkdir()
    (host / "tool.sh").write_text("#!/bin/sh\necho tool \"$1\"\n")
    os.chmod(host / "tool.sh", 0o755)
    c = {"name": "c1", "image": "opt", "args": ["hi"], "volumeMounts": [{"name": "opt", "mountPath": "o"}]}
    pod = make_pod([c], [{"name": "opt", "hostPath": {"path": str(host)}}])
    staged = stage(pod)
    assert staged.argv == [f"{staged.container_dir}/o/tool.sh", "hi"]
    assert run(staged).stdout == "tool hi\n"


def test_no_command_no_script_no_args(stage):
    with pytest.raises(ConfigError, match='has no command, and its image "busybox" names no script volume'):
        stage(make_pod([{"name": "c1", "image": "busybox"}]))
    assert stage(make_pod([{"name": "c1", "image": "busybox", "args": ["echo", "hi"]}])).argv == ["echo", "hi"]


# --- argv expansion ------------------------------------------------------------------------------

def test_argv_expansion_and_no_resplitting(stage, home):
    c = {"name": "c1", "image": "none",
         "command": ["printf", "%s|"],
         "args": ["$(GREETING) world", "$$(GREETING)", "$GREETING", "${GREETING}", "$UNSET", "$(UNSET)",
                  "~/data", "$HOME/x", "a b  c", "*", "$(EMPTY)"],
         "env": [{"name": "GREETING", "value": "bonjour"}, {"name": "EMPTY", "value": ""}]}
    staged = stage(make_pod([c]))
    expected = ["bonjour world", "$(GREETING)", "bonjour", "bonjour", "$UNSET", "$(UNSET)",
                f"{home}/data", f"{home}/x", "a b  c", "*", ""]
    assert staged.argv == ["printf", "%s|"] + expected
    assert run(staged).stdout == "".join(f"{a}|" for a in expected)


def test_command_expansion_around_the_script(stage, home):
    pod = script_pod("scripts/a.sh", ["$(SHELL_NAME)"], ["~", "$(POD)"])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "SHELL_NAME", "value": "sh"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    staged = stage(pod, StaticResolver([scripts_cm(TWO)]))
    assert staged.argv == ["sh", staged.script, home, "p1"]
    assert run(staged).stdout == f"A {home} p1\n"


def test_script_sees_its_environment_and_runs_in_its_directory(stage):
    data = {"env.sh": '#!/bin/sh\necho "$POD|$HOSTNAME|$FROM_CM|$(pwd)"\n', "greeting": "salut"}
    pod = script_pod("scripts/env.sh", ["sh"])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "scripts", "key": "greeting"}}}]
    staged = stage(pod, StaticResolver([scripts_cm(data)]))
    assert staged.cwd == os.path.dirname(staged.script)
    assert run(staged).stdout == f"p1|p1|salut|{staged.cwd}\n"


# --- limits, idempotence, errors -----------------------------------------------------------------

def test_limits(stage):
    c = {"name": "c1", "image": "none", "command": ["true"],
         "resources": {"limits": {"memory": "1.5Gi", "cpu": "250m"}, "requests": {"memory": "1Gi"}}}
    staged = stage(make_pod([c]))
    assert staged.memory_limit_bytes == 3 * 2**29 and staged.cpu_limit_cores == 0.25


@pytest.mark.parametrize("limits, match", [
    ({"memory": "lots"}, "resources.limits: invalid quantity 'lots'"),
    ({"cpu": "1x"}, "resources.limits: invalid quantity '1x'"),
    ({"memory": "-1Mi"}, "must be positive"),
    ({"cpu": "0"}, "must be positive"),
])
def test_bad_limit_is_a_config_error(stage, limits, match):
    c = {"name": "c1", "image": "none", "command": ["true"], "resources": {"limits": limits}}
    with pytest.raises(ConfigError, match=match):
        stage(make_pod([c]))


def test_staging_twice_gives_the_same_result(stage):
    pod, objects = load_example("stress-pod.yaml")
    resolver = StaticResolver(objects)
    first = stage(pod, resolver)
    second = stage(pod, resolver)
    assert (first.argv, first.env, first.cwd, first.script) == (second.argv, second.env, second.cwd, second.script)
    assert sorted(os.listdir(os.path.dirname(first.script))) == ["burn.sh"]


def test_invalid_names_are_config_errors(stage):
    with pytest.raises(ConfigError, match="invalid pod name") as info:
        stage(make_pod([{"name": "c1", "image": "none", "command": ["true"]}], name="../../etc"))
    assert info.value.cause == errors.BAD_PATH
    with pytest.raises(ConfigError, match="invalid container name"):
        stage(make_pod([{"name": "C_1", "image": "none", "command": ["true"]}]))


def test_non_string_command_elements(stage):
    with pytest.raises(ConfigError, match="command elements must be strings"):
        stage(make_pod([{"name": "c1", "image": "none", "command": ["sleep", 5]}]))


def test_io_failure_is_reported_as_a_config_error(tmp_path, home):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    pod = make_pod([{"name": "c1", "image": "none", "command": ["true"]}])
    with pytest.raises(ConfigError) as info:
        stage_container(pod, pod["spec"]["containers"][0], Workspace(blocker), StaticResolver(), home=home,
                        base_env=BASE_ENV)
    assert info.value.reason in ("CreateContainerError", "CreateContainerConfigError")


def test_kube_api_access_in_every_container_of_an_admitted_pod(stage):
    pod, objects = load_example("secret-pod.yaml")
    sa_volume = {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}}
    pod["spec"]["volumes"].append(sa_volume)
    pod["spec"]["serviceAccountName"] = "default"
    for c in pod["spec"]["containers"]:
        c["volumeMounts"].append({"name": "kube-api-access-abcde", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    ca = {"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA"}}
    staged = stage(pod, StaticResolver(objects + [ca]))
    sa = os.path.join(staged.container_dir, "var/run/secrets/kubernetes.io/serviceaccount")
    assert sorted(os.listdir(sa)) == ["ca.crt", "namespace", "token"]
    assert open(os.path.join(sa, "namespace")).read() == "default"
    assert run(staged).returncode == 0


# --- layering --------------------------------------------------------------------------------------

def banned(module):
    return (module.split(".")[0] in ("kubernetes", "psutil", "subprocess")
            or module.startswith(("vkcmd.kube", "vkcmd.runtime")))  # vkcmd.kube*, vkcmd.kubeletapi*, vkcmd.runtime*


def test_pods_package_imports_nothing_it_must_not():
    found = []
    for path in sorted((REPO / "vkcmd" / "pods").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                names = []
            found += [f"{path.name}:{node.lineno} imports {name}" for name in names if banned(name)]
    assert not found
