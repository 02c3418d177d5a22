"""Every volume type on disk: items, modes, optional, binary data, links, subPath, readOnly, bad paths."""

import base64
import os
import stat

import pytest

from vkcmd.pods import ConfigError, StaticResolver
from vkcmd.pods import errors

from .conftest import make_pod

SECRET_VALUE = "s3cr3t-p4ssw0rd-never-logged"


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def cm(name, data=None, binary=None, namespace="ns1"):
    obj = {"kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data or {}}
    if binary:
        obj["binaryData"] = {k: b64(v) for k, v in binary.items()}
    return obj


def secret(name, data=None, namespace="ns1", string_data=None):
    obj = {"kind": "Secret", "metadata": {"name": name, "namespace": namespace},
           "data": {k: b64(v) for k, v in (data or {}).items()}}
    if string_data:
        obj["stringData"] = string_data
    return obj


def container(mounts, **kw):
    return {"name": "c1", "image": "none", "command": ["true"], "volumeMounts": mounts, **kw}


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree(path):
    """{relative path: bytes or 'dir' or ('link', target)} of everything under path."""
    out = {}
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = "dir"
            else:
                with open(full, "rb") as f:
                    out[rel] = f.read()
    return out


# --- configMap -----------------------------------------------------------------------

def test_config_map_all_keys_and_binary_data(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "etc/cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "app"}}])
    resolver = StaticResolver([cm("app", {"a.conf": "alpha\n", "b.txt": "beta"}, binary={"blob.bin": b"\x00\xff\x10"})])
    staged = stage(pod, resolver)
    mount = os.path.join(staged.container_dir, "etc", "cfg")
    assert tree(mount) == {"a.conf": b"alpha\n", "b.txt": b"beta", "blob.bin": b"\x00\xff\x10"}
    assert mode_of(os.path.join(mount, "a.conf")) == 0o644
    volume = os.path.join(os.path.dirname(os.path.dirname(staged.container_dir)), "volumes", "cfg")
    assert tree(volume) == tree(mount)  # the pod-level copy


def test_config_map_items_paths_and_modes(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "defaultMode": 0o600, "items": [
                       {"key": "a", "path": "nested/dir/a.sh", "mode": 0o755},
                       {"key": "b", "path": "b.txt"}]}}])
    staged = stage(pod, StaticResolver([cm("app", {"a": "A", "b": "B", "c": "C"})]))
    mount = os.path.join(staged.container_dir, "cfg")
    assert tree(mount) == {"nested": "dir", "nested/dir": "dir", "nested/dir/a.sh": b"A", "b.txt": b"B"}
    assert mode_of(os.path.join(mount, "nested/dir/a.sh")) == 0o755
    assert mode_of(os.path.join(mount, "b.txt")) == 0o600


def test_config_map_missing_is_a_config_error_then_retry_succeeds(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "later"}}])
    resolver = StaticResolver()
    with pytest.raises(ConfigError) as info:
        stage(pod, resolver)
    err = info.value
    assert err.reason == "CreateContainerConfigError"
    assert err.message == 'MountVolume.SetUp failed for volume "cfg" : configmap "later" not found'
    assert err.cause == errors.NOT_FOUND and err.retryable
    resolver.add(cm("later", {"k": "v"}))
    staged = stage(pod, resolver)
    assert tree(os.path.join(staged.container_dir, "cfg")) == {"k": b"v"}


def test_config_map_missing_key(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "nope", "path": "x"}]}}])
    with pytest.raises(ConfigError) as info:
        stage(pod, StaticResolver([cm("app", {"k": "v"})]))
    assert info.value.message == ('MountVolume.SetUp failed for volume "cfg" : '
                                  "configmap references non-existent config key: nope")
    assert info.value.cause == errors.KEY_NOT_FOUND and info.value.retryable


def test_optional_config_map_missing_or_key_missing_is_fine(stage):
    pod = make_pod([container([{"name": "a", "mountPath": "a"}, {"name": "b", "mountPath": "b"}])],
                   [{"name": "a", "configMap": {"name": "absent", "optional": True}},
                    {"name": "b", "configMap": {"name": "app", "optional": True,
                                                "items": [{"key": "nope", "path": "x"}, {"key": "k", "path": "y"}]}}])
    staged = stage(pod, StaticResolver([cm("app", {"k": "v"})]))
    assert tree(os.path.join(staged.container_dir, "a")) == {}
    assert tree(os.path.join(staged.container_dir, "b")) == {"y": b"v"}


# --- secret --------------------------------------------------------------------------

def test_secret_binary_data_and_owner_only_modes(stage):
    pod = make_pod([container([{"name": "s", "mountPath": "s"}, {"name": "t", "mountPath": "t"}])],
                   [{"name": "s", "secret": {"secretName": "creds", "defaultMode": 420}},
                    {"name": "t", "secret": {"secretName": "creds", "items": [
                        {"key": "key.bin", "path": "k.bin", "mode": 0o400},
                        {"key": "password", "path": "run.sh", "mode": 0o755}]}}])
    resolver = StaticResolver([secret("creds", {"password": SECRET_VALUE, "key.bin": b"\x00\x01\xfe\xff"})])
    staged = stage(pod, resolver)
    s_dir = os.path.join(staged.container_dir, "s")
    assert tree(s_dir) == {"password": SECRET_VALUE.encode(), "key.bin": b"\x00\x01\xfe\xff"}
    assert mode_of(os.path.join(s_dir, "password")) == 0o600   # 0644 asked: group and others dropped
    assert mode_of(s_dir) == 0o700
    t_dir = os.path.join(staged.container_dir, "t")
    assert mode_of(os.path.join(t_dir, "k.bin")) == 0o400
    assert mode_of(os.path.join(t_dir, "run.sh")) == 0o700


def test_secret_string_data_is_honoured(stage):
    pod = make_pod([container([{"name": "s", "mountPath": "s"}])], [{"name": "s", "secret": {"secretName": "x"}}])
    staged = stage(pod, StaticResolver([secret("x", string_data={"a": "from-string-data"})]))
    assert tree(os.path.join(staged.container_dir, "s")) == {"a": b"from-string-data"}


def test_secret_missing_and_missing_key_messages(stage):
    pod = make_pod([container([{"name": "s", "mountPath": "s"}])],
                   [{"name": "s", "secret": {"secretName": "creds", "items": [{"key": "nope", "path": "x"}]}}])
    with pytest.raises(ConfigError, match='^MountVolume.SetUp failed for volume "s" : secret "creds" not found$'):
        stage(pod)
    with pytest.raises(ConfigError) as info:
        stage(pod, StaticResolver([secret("creds", {"password": SECRET_VALUE})]))
    assert info.value.message == 'MountVolume.SetUp failed for volume "s" : references non-existent secret key: nope'


def test_secret_bad_base64_names_the_key_not_the_value(stage):
    pod = make_pod([container([{"name": "s", "mountPath": "s"}])], [{"name": "s", "secret": {"secretName": "x"}}])
    bad = {"kind": "Secret", "metadata": {"name": "x", "namespace": "ns1"}, "data": {"pw": SECRET_VALUE + "!!"}}
    with pytest.raises(ConfigError) as info:
        stage(pod, StaticResolver([bad]))
    assert '"pw"' in info.value.message and SECRET_VALUE not in info.value.message
    assert info.value.cause == errors.INVALID_DATA


def test_secret_contents_are_never_logged(stage, caplog):
    caplog.set_level("DEBUG")
    pod = make_pod([container([{"name": "s", "mountPath": "s"}],
                              env=[{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}}],
                              args=["--password=$(PW)"])],
                   [{"name": "s", "secret": {"secretName": "creds"}}])
    staged = stage(pod, StaticResolver([secret("creds", {"pw": SECRET_VALUE})]))
    assert staged.env["PW"] == SECRET_VALUE and staged.argv[-1] == f"--password={SECRET_VALUE}"
    assert caplog.records  # staging does log
    assert SECRET_VALUE not in caplog.text
    assert SECRET_VALUE not in repr(staged)


# --- projected: the ServiceAccount admission plugin's volume ---------------------------------

KUBE_API_ACCESS = {
    "name": "kube-api-access-x7k2p",
    "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]},
}
SA_MOUNT = {"name": "kube-api-access-x7k2p", "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_kube_api_access_volume_at_its_absolute_path(stage, tmp_path):
    pod = make_pod([container([SA_MOUNT]), dict(container([SA_MOUNT]), name="c2")], [KUBE_API_ACCESS])
    pod["spec"]["serviceAccountName"] = "default"
    resolver = StaticResolver([cm("kube-root-ca.crt", {"ca.crt": CA})], token="eyJ.token.sig")
    for name in ("c1", "c2"):
        staged = stage(pod, resolver, container=name)
        sa_dir = os.path.join(staged.container_dir, "var/run/secrets/kubernetes.io/serviceaccount")
        assert tree(sa_dir) == {"token": b"eyJ.token.sig", "ca.crt": CA.encode(), "namespace": b"ns1"}
        assert mode_of(os.path.join(sa_dir, "token")) == 0o400      # owner-only, then readOnly
        assert mode_of(os.path.join(sa_dir, "ca.crt")) == 0o444
        assert mode_of(os.path.join(sa_dir, "namespace")) == 0o444
        assert not os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt") or \
            open("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt").read() != CA
    assert resolver.token_requests[0] == {"namespace": "ns1", "serviceAccount": "default", "audiences": [],
                                          "expirationSeconds": 3607, "pod": "p1"}


def test_projected_token_failure_and_audience(stage):
    vol = {"name": "tok", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "vault/token"}}]}}
    pod = make_pod([container([{"name": "tok", "mountPath": "tok"}])], [vol])
    pod["spec"]["serviceAccountName"] = "robot"

    def refuse(*args):
        raise RuntimeError("serviceaccounts \"robot\" not found")

    with pytest.raises(ConfigError) as info:
        stage(pod, StaticResolver(token=refuse))
    assert info.value.message == ('MountVolume.SetUp failed for volume "tok" : failed to fetch token: '
                                  'serviceaccounts "robot" not found')
    assert info.value.retryable
    resolver = StaticResolver()
    staged = stage(pod, resolver)
    assert open(os.path.join(staged.container_dir, "tok/vault/token")).read() == "static-token.ns1.robot"
    assert resolver.token_requests[-1]["audiences"] == ["vault"]
    assert resolver.token_requests[-1]["expirationSeconds"] == 600


def test_projected_secret_and_config_map_with_items_and_optional(stage):
    vol = {"name": "all", "projected": {"defaultMode": 0o640, "sources": [
        {"configMap": {"name": "app", "items": [{"key": "a", "path": "conf/a"}]}},
        {"secret": {"name": "creds", "items": [{"key": "pw", "path": "conf/pw", "mode": 0o644}]}},
        {"secret": {"name": "absent", "optional": True}},
        {"configMap": {"name": "absent", "optional": True}},
    ]}}
    pod = make_pod([container([{"name": "all", "mountPath": "all"}])], [vol])
    staged = stage(pod, StaticResolver([cm("app", {"a": "A"}), secret("creds", {"pw": SECRET_VALUE})]))
    mount = os.path.join(staged.container_dir, "all")
    assert tree(mount) == {"conf": "dir", "conf/a": b"A", "conf/pw": SECRET_VALUE.encode()}
    assert mode_of(os.path.join(mount, "conf/a")) == 0o640
    assert mode_of(os.path.join(mount, "conf/pw")) == 0o600
    vol["projected"]["sources"][2]["secret"]["optional"] = False
    with pytest.raises(ConfigError, match='secret "absent" not found'):
        stage(pod, StaticResolver([cm("app", {"a": "A"}), secret("creds", {"pw": "x"})]))


def test_projected_unsupported_source(stage):
    vol = {"name": "b", "projected": {"sources": [{"clusterTrustBundle": {"name": "x", "path": "b.pem"}}]}}
    pod = make_pod([container([{"name": "b", "mountPath": "b"}])], [vol])
    with pytest.raises(ConfigError, match="unsupported projected source") as info:
        stage(pod)
    assert info.value.cause == errors.UNSUPPORTED_VOLUME and not info.value.retryable


# --- downwardAPI -------------------------------------------------------------------------

def test_downward_api_volume(stage):
    vol = {"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}, "mode": 0o600},
        {"path": "mem", "resourceFieldRef": {"containerName": "c1", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c1", "resource": "limits.cpu", "divisor": "1m"}},
    ]}}
    c = container([{"name": "info", "mountPath": "/etc/podinfo"}], resources={"limits": {"memory": "64Mi"}})
    pod = make_pod([c], [vol], labels={"zone": "us", "app": "web"},
                   annotations={"note": 'say "hi"\nbye', "build": "7"})
    staged = stage(pod)
    d = os.path.join(staged.container_dir, "etc/podinfo")
    assert open(os.path.join(d, "labels")).read() == 'app="web"\nzone="us"'
    assert open(os.path.join(d, "annotations")).read() == 'build="7"\nnote="say \\"hi\\"\\nbye"'
    assert open(os.path.join(d, "name")).read() == "p1"
    assert open(os.path.join(d, "uid")).read() == "uid-1234"
    assert open(os.path.join(d, "app")).read() == "web"
    assert mode_of(os.path.join(d, "app")) == 0o600
    assert open(os.path.join(d, "mem")).read() == "64"
    assert open(os.path.join(d, "cpu")).read() == "4000"  # no limit: the node's allocatable (4 cores)


def test_downward_api_unsupported_field(stage):
    vol = {"name": "info", "downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.bogus"}}]}}
    pod = make_pod([container([{"name": "info", "mountPath": "info"}])], [vol])
    with pytest.raises(ConfigError, match="unsupported fieldPath: spec.bogus"):
        stage(pod)


# --- emptyDir and hostPath -----------------------------------------------------------------

def test_empty_dir_is_shared_between_containers_and_survives_restaging(stage, workspace):
    mounts = [{"name": "scratch", "mountPath": "shared"}]
    pod = make_pod([container(mounts), dict(container([{"name": "scratch", "mountPath": "/data/in"}]), name="c2")],
                   [{"name": "scratch", "emptyDir": {}}])
    a = stage(pod, container="c1")
    b = stage(pod, container="c2")
    link_a = os.path.join(a.container_dir, "shared")
    link_b = os.path.join(b.container_dir, "data/in")
    volume = workspace.volume_dir("ns1", "p1", "scratch")
    assert os.path.islink(link_a) and os.readlink(link_a) == volume
    assert os.path.realpath(link_b) == volume
    with open(os.path.join(link_a, "out.txt"), "w") as f:
        f.write("from c1")
    assert open(os.path.join(link_b, "out.txt")).read() == "from c1"
    stage(pod, container="c1")
    assert open(os.path.join(link_b, "out.txt")).read() == "from c1"


def test_host_path_is_a_link_never_written_through(stage, tmp_path):
    host = tmp_path / "host" / "data"
    host.mkdir(parents=True)
    (host / "input.csv").write_text("1,2\n")
    os.chmod(host / "input.csv", 0o644)
    before = tree(host)
    pod = make_pod([container([{"name": "h", "mountPath": "in", "readOnly": True},
                               {"name": "f", "mountPath": "one.csv"}])],
                   [{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}},
                    {"name": "f", "hostPath": {"path": str(host / "input.csv"), "type": "File"}}])
    staged = stage(pod)
    link = os.path.join(staged.container_dir, "in")
    assert os.readlink(link) == str(host)
    assert os.readlink(os.path.join(staged.container_dir, "one.csv")) == str(host / "input.csv")
    assert tree(host) == before and mode_of(host / "input.csv") == 0o644
    stage(pod)
    assert tree(host) == before


@pytest.mark.parametrize("host_type, message", [
    ("Directory", "is not a directory"), ("File", "is not a file"), ("Socket", "is not a socket file"),
    ("CharDevice", "is not a character device"), ("BlockDevice", "is not a block device"),
])
def test_host_path_type_checks(stage, tmp_path, host_type, message):
    path = tmp_path / "missing"
    pod = make_pod([container([{"name": "h", "mountPath": "h"}])],
                   [{"name": "h", "hostPath": {"path": str(path), "type": host_type}}])
    with pytest.raises(ConfigError) as info:
        stage(pod)
    assert info.value.message == ('MountVolume.SetUp failed for volume "h" : '
                                  f"hostPath type check failed: {path} {message}")
    assert info.value.retryable


def test_host_path_or_create_does_not_create_on_the_host(stage, tmp_path):
    path = tmp_path / "not-yet"
    pod = make_pod([container([{"name": "h", "mountPath": "h"}])],
                   [{"name": "h", "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}])
    staged = stage(pod)
    assert os.readlink(os.path.join(staged.container_dir, "h")) == str(path) and not path.exists()


def test_host_path_must_be_absolute(stage):
    pod = make_pod([container([{"name": "h", "mountPath": "h"}])], [{"name": "h", "hostPath": {"path": "rel"}}])
    with pytest.raises(ConfigError, match="must be an absolute path"):
        stage(pod)


# --- subPath -----------------------------------------------------------------------------

def test_sub_path_of_a_config_map(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "etc/app.conf", "subPath": "app.conf"},
                               {"name": "cfg", "mountPath": "etc/d", "subPath": "dir"},
                               {"name": "cfg", "mountPath": "etc/none", "subPath": "nothing"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "items": [
                       {"key": "app.conf", "path": "app.conf"}, {"key": "x", "path": "dir/x.txt"}]}}])
    staged = stage(pod, StaticResolver([cm("app", {"app.conf": "port=80", "x": "X"})]))
    path = os.path.join(staged.container_dir, "etc/app.conf")
    assert os.path.isfile(path) and open(path).read() == "port=80"
    assert tree(os.path.join(staged.container_dir, "etc/d")) == {"x.txt": b"X"}
    assert tree(os.path.join(staged.container_dir, "etc/none")) == {}


def test_sub_path_and_sub_path_expr_of_an_empty_dir(stage, workspace):
    pod = make_pod([container([{"name": "e", "mountPath": "logs", "subPathExpr": "$(POD_NAME)/logs"},
                               {"name": "e", "mountPath": "cache", "subPath": "cache"}],
                              env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])],
                   [{"name": "e", "emptyDir": {}}])
    staged = stage(pod)
    volume = workspace.volume_dir("ns1", "p1", "e")
    assert os.readlink(os.path.join(staged.container_dir, "logs")) == os.path.join(volume, "p1", "logs")
    assert os.path.isdir(os.path.join(volume, "p1", "logs")) and os.path.isdir(os.path.join(volume, "cache"))


def test_sub_path_symlink_escape_in_an_empty_dir_is_refused(stage, workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    volume = workspace.ensure_volume("ns1", "p1", "e")
    os.symlink(outside, os.path.join(volume, "evil"))
    pod = make_pod([container([{"name": "e", "mountPath": "m", "subPath": "evil/x"}])],
                   [{"name": "e", "emptyDir": {}}])
    with pytest.raises(ConfigError) as info:
        stage(pod)
    assert info.value.cause == errors.BAD_PATH
    assert os.listdir(outside) == []


def test_sub_path_escape_in_a_host_path_is_refused(stage, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    os.symlink("/etc", host / "etc-link")
    pod = make_pod([container([{"name": "h", "mountPath": "m", "subPath": "etc-link"}])],
                   [{"name": "h", "hostPath": {"path": str(host)}}])
    with pytest.raises(ConfigError, match="leads out of the volume"):
        stage(pod)


@pytest.mark.parametrize("sub_path", ["../x", "a/../../x", ".."])
def test_sub_path_with_dot_dot_is_refused(stage, sub_path):
    pod = make_pod([container([{"name": "e", "mountPath": "m", "subPath": sub_path}])],
                   [{"name": "e", "emptyDir": {}}])
    with pytest.raises(ConfigError, match="must not contain '..'") as info:
        stage(pod)
    assert info.value.cause == errors.BAD_PATH and not info.value.retryable


# --- readOnly ----------------------------------------------------------------------------

def test_read_only_copies_lose_write_bits_and_restage_still_works(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "ro/cfg", "readOnly": True},
                               {"name": "cfg", "mountPath": "ro/cfg/nested/again"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "k", "path": "d/k"}]}}])
    resolver = StaticResolver([cm("app", {"k": "v1"})])
    staged = stage(pod, resolver)
    mount = os.path.join(staged.container_dir, "ro/cfg")
    assert mode_of(os.path.join(mount, "d/k")) == 0o444
    assert mode_of(os.path.join(mount, "d")) & 0o222 == 0
    assert mode_of(mount) & 0o222 == 0
    assert open(os.path.join(mount, "nested/again/d/k")).read() == "v1"
    assert mode_of(os.path.join(mount, "nested/again/d/k")) == 0o644
    resolver.add(cm("app", {"k": "v2"}))
    stage(pod, resolver)
    assert open(os.path.join(mount, "d/k")).read() == "v2"
    assert open(os.path.join(mount, "nested/again/d/k")).read() == "v2"


# --- volume and path errors -------------------------------------------------------------------

def test_unknown_volume_type(stage):
    pod = make_pod([container([{"name": "data", "mountPath": "data"}])],
                   [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}])
    with pytest.raises(ConfigError) as info:
        stage(pod)
    assert info.value.reason == "CreateContainerConfigError"
    assert 'volume "data" has type persistentVolumeClaim, which vkcmd does not support' in info.value.message
    assert info.value.cause == errors.UNSUPPORTED_VOLUME and not info.value.retryable


def test_volume_without_source_and_mount_of_undefined_volume(stage):
    with pytest.raises(ConfigError, match="exactly one source"):
        stage(make_pod([container([{"name": "v", "mountPath": "v"}])], [{"name": "v"}]))
    with pytest.raises(ConfigError, match='refers to volume "ghost", which the pod does not define'):
        stage(make_pod([container([{"name": "ghost", "mountPath": "v"}])]))


def test_unmounted_unknown_volumes_are_not_staged(stage):
    pod = make_pod([container([])], [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}])
    assert stage(pod).argv == ["true"]


@pytest.mark.parametrize("mount_path, match", [
    ("../escape", "must not contain '..'"), ("a/../../b", "must not contain '..'"), ("/../../etc", "'..'"),
    ("/", "container directory itself"), (".", "container directory itself"),
    ("stdout", "reserved"), ("pgid", "reserved"), ("/stderr", "reserved"), ("stdout/x", "reserved"),
    (".stdout.idx", "reserved"), ("stderr.previous", "reserved"),
])
def test_bad_mount_paths(stage, tmp_path, mount_path, match):
    pod = make_pod([container([{"name": "e", "mountPath": mount_path}])], [{"name": "e", "emptyDir": {}}])
    with pytest.raises(ConfigError, match=match) as info:
        stage(pod)
    assert info.value.cause == errors.BAD_PATH


def test_duplicate_mount_paths(stage):
    pod = make_pod([container([{"name": "e", "mountPath": "x"}, {"name": "e", "mountPath": "/x/"}])],
                   [{"name": "e", "emptyDir": {}}])
    with pytest.raises(ConfigError, match="more than one volumeMount"):
        stage(pod)


@pytest.mark.parametrize("path", ["../x", "a/../../x"])
def test_item_paths_with_dot_dot_are_refused(stage, path):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "k", "path": path}]}}])
    with pytest.raises(ConfigError, match="'..'") as info:
        stage(pod, StaticResolver([cm("app", {"k": "v"})]))
    assert info.value.cause == errors.BAD_PATH


def test_item_path_that_is_both_file_and_directory(stage):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "items": [
                       {"key": "a", "path": "x"}, {"key": "b", "path": "x/y"}]}}])
    with pytest.raises(ConfigError, match="both a file and a directory"):
        stage(pod, StaticResolver([cm("app", {"a": "A", "b": "B"})]))


@pytest.mark.parametrize("mode", [0o1777, -1, "420", True])
def test_invalid_modes(stage, mode):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}])],
                   [{"name": "cfg", "configMap": {"name": "app", "defaultMode": mode}}])
    with pytest.raises(ConfigError, match="invalid mode"):
        stage(pod, StaticResolver([cm("app", {"a": "A"})]))


def test_planted_symlink_in_the_workspace_is_refused(stage, workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cdir = workspace.ensure_container("ns1", "p1", "c1")
    os.symlink(outside, os.path.join(cdir, "conf"))
    pod = make_pod([container([{"name": "cfg", "mountPath": "conf/app"}])],
                   [{"name": "cfg", "configMap": {"name": "app"}}])
    with pytest.raises(ConfigError, match="symlink leading out") as info:
        stage(pod, StaticResolver([cm("app", {"a": "A"})]))
    assert info.value.cause == errors.BAD_PATH
    assert os.listdir(outside) == []


def test_planted_symlink_at_the_mount_point_is_replaced_not_followed(stage, workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_text("precious")
    cdir = workspace.ensure_container("ns1", "p1", "c1")
    os.symlink(outside, os.path.join(cdir, "conf"))
    pod = make_pod([container([{"name": "cfg", "mountPath": "conf"}])],
                   [{"name": "cfg", "configMap": {"name": "app"}}])
    staged = stage(pod, StaticResolver([cm("app", {"a": "A"})]))
    assert (outside / "a").read_text() == "precious" and os.listdir(outside) == ["a"]
    assert not os.path.islink(os.path.join(staged.container_dir, "conf"))
    assert tree(os.path.join(staged.container_dir, "conf")) == {"a": b"A"}


def test_mount_nested_in_a_link_mount_is_refused(stage, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    pod = make_pod([container([{"name": "h", "mountPath": "data"}, {"name": "cfg", "mountPath": "data/cfg"}])],
                   [{"name": "h", "hostPath": {"path": str(host)}}, {"name": "cfg", "configMap": {"name": "app"}}])
    with pytest.raises(ConfigError, match="symlink leading out"):
        stage(pod, StaticResolver([cm("app", {"a": "A"})]))
    assert os.listdir(host) == []


# --- idempotence and confinement ------------------------------------------------------------------

def test_restage_overwrites_cleanly_and_drops_stale_keys(stage, workspace):
    pod = make_pod([container([{"name": "cfg", "mountPath": "cfg"}, {"name": "s", "mountPath": "s"}])],
                   [{"name": "cfg", "configMap": {"name": "app"}}, {"name": "s", "secret": {"secretName": "x"}}])
    resolver = StaticResolver([cm("app", {"keep": "1", "drop": "2"}), secret("x", {"a": "1", "b": "2"})])
    staged = stage(pod, resolver)
    resolver.add(cm("app", {"keep": "changed"}))
    resolver.add(secret("x", {"a": "new"}))
    again = stage(pod, resolver)
    assert again.container_dir == staged.container_dir
    assert tree(os.path.join(again.container_dir, "cfg")) == {"keep": b"changed"}
    assert tree(os.path.join(again.container_dir, "s")) == {"a": b"new"}
    assert tree(workspace.volume_dir("ns1", "p1", "cfg")) == {"keep": b"changed"}
    leftovers = [n for top, dirs, files in os.walk(workspace.pod_dir("ns1", "p1")) for n in dirs + files
                 if n.startswith(".vkcmd-")]
    assert leftovers == []


def test_nothing_is_written_outside_the_pod_directory(stage, workspace, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    pod = make_pod([container([SA_MOUNT, {"name": "e", "mountPath": "/tmp/e"}, {"name": "h", "mountPath": "/h"},
                               {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}])],
                   [KUBE_API_ACCESS, {"name": "e", "emptyDir": {}}, {"name": "h", "hostPath": {"path": str(host)}},
                    {"name": "cfg", "configMap": {"name": "app"}}])
    resolver = StaticResolver([cm("kube-root-ca.crt", {"ca.crt": CA}), cm("app", {"a": "A"})])
    snapshot = {p: tree(str(p)) for p in tmp_path.iterdir() if p.name != "root"}
    stage(pod, resolver)
    stage(pod, resolver)
    assert {p: tree(str(p)) for p in tmp_path.iterdir() if p.name != "root"} == snapshot
    assert os.listdir(workspace.root) == ["ns1"]
    assert os.listdir(os.path.join(workspace.root, "ns1")) == ["p1"]
    assert sorted(os.listdir(workspace.pod_dir("ns1", "p1"))) == ["containers", "volumes"]
    assert workspace.remove_pod("ns1", "p1")
    assert os.listdir(host) == []


def test_containers_of_one_pod_staged_concurrently(workspace, home):
    from concurrent.futures import ThreadPoolExecutor

    from vkcmd.pods import stage_container

    from .conftest import BASE_ENV

    mounts = [{"name": "cfg", "mountPath": "cfg"}, {"name": "e", "mountPath": "e"}, SA_MOUNT]
    containers = [dict(container(mounts), name=f"c{i}") for i in range(6)]
    pod = make_pod(containers, [{"name": "cfg", "configMap": {"name": "app"}}, {"name": "e", "emptyDir": {}},
                                KUBE_API_ACCESS])
    resolver = StaticResolver([cm("app", {"a": "A", "b": "B"}), cm("kube-root-ca.crt", {"ca.crt": CA})])

    def one(c):
        return stage_container(pod, c, workspace, resolver, home=home, base_env=BASE_ENV)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, containers * 4))
    for staged in results:
        assert tree(os.path.join(staged.container_dir, "cfg")) == {"a": b"A", "b": b"B"}
    assert tree(workspace.volume_dir("ns1", "p1", "cfg")) == {"a": b"A", "b": b"B"}
    leftovers = [n for top, dirs, files in os.walk(workspace.pod_dir("ns1", "p1")) for n in dirs + files
                 if n.startswith(".vkcmd-")]
    assert leftovers == []
