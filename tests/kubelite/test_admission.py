"""kubelite.admission: pods shaped as a default cluster shapes them; validation; update rules."""

import base64
import copy
import re

import pytest

from tools.kubelite.admission import TOKEN_MOUNT_PATH, AdmissionError, admit_create, admit_update


class View:
    def __init__(self, *objects):
        self.objects = {}
        for resource, obj in objects:
            meta = obj["metadata"]
            self.objects[(resource, meta.get("namespace", ""), meta["name"])] = obj

    def get(self, resource, namespace, name):
        return self.objects.get((resource, namespace or "", name))

    def list(self, resource, namespace=None):
        return [o for (r, ns, _), o in self.objects.items()
                if r == resource and (namespace is None or ns == namespace)]


def account(name="default", namespace="default", **extra):
    return ("serviceaccounts", {"metadata": {"name": name, "namespace": namespace}, **extra})


VIEW = View(account(), account("robot"), account("quiet", automountServiceAccountToken=False),
            account("puller", imagePullSecrets=[{"name": "regcred"}]))


def pod(name="p", **spec):
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c1", "image": "burn", "command": ["bash"],
                                 "volumeMounts": [{"name": "burn", "mountPath": "stress/job1"}]}],
                 "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                 "volumes": [{"name": "burn", "configMap": {"name": "burn"}}]},
    }
    body["spec"].update(spec)
    return body


def create(obj, resource="pods", view=VIEW):
    before = copy.deepcopy(obj)
    out = admit_create(resource, obj, view)
    assert obj == before, "input mutated"
    return out


def invalid_fields(exc):
    assert exc.code == 422 and exc.reason == "Invalid"
    return {c["field"]: c for c in exc.details["causes"]}


# ---- ServiceAccount plugin ---------------------------------------------------------

def test_service_account_token_volume_and_mounts():
    out = create(pod())
    spec = out["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    token = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(token) == 1
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", token[0]["name"])
    assert token[0]["projected"] == {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
        "defaultMode": 420,
    }
    for c in spec["containers"] + spec["initContainers"]:
        assert {"name": token[0]["name"], "readOnly": True, "mountPath": TOKEN_MOUNT_PATH} in c["volumeMounts"]
    assert spec["containers"][0]["volumeMounts"][0] == {"name": "burn", "mountPath": "stress/job1"}


def test_named_service_account():
    out = create(pod(serviceAccountName="robot"))
    assert out["spec"]["serviceAccountName"] == "robot"


def test_missing_service_account_is_forbidden():
    with pytest.raises(AdmissionError) as err:
        create(pod(serviceAccountName="ghost"))
    assert err.value.code == 403 and err.value.reason == "Forbidden"
    assert err.value.message == ('pods "p" is forbidden: error looking up service account default/ghost: '
                                 'serviceaccount "ghost" not found')


def test_missing_default_account_in_new_namespace():
    p = pod()
    p["metadata"] = {"generateName": "web-", "namespace": "fresh"}
    with pytest.raises(AdmissionError) as err:
        create(p)
    assert "error looking up service account fresh/default" in err.value.message


@pytest.mark.parametrize("spec,sa", [({"automountServiceAccountToken": False}, "default"),
                                     ({}, "quiet")])
def test_automount_opt_out(spec, sa):
    out = create(pod(serviceAccountName=sa, **spec))
    assert not any(v["name"].startswith("kube-api-access-") for v in out["spec"]["volumes"])
    assert all(m["mountPath"] != TOKEN_MOUNT_PATH for m in out["spec"]["containers"][0]["volumeMounts"])


def test_pod_opt_in_overrides_account_opt_out():
    out = create(pod(serviceAccountName="quiet", automountServiceAccountToken=True))
    assert any(v["name"].startswith("kube-api-access-") for v in out["spec"]["volumes"])


def test_existing_mount_at_token_path_is_kept():
    p = pod()
    p["spec"]["volumes"].append({"name": "mine", "emptyDir": {}})
    p["spec"]["containers"][0]["volumeMounts"].append({"name": "mine", "mountPath": TOKEN_MOUNT_PATH})
    out = create(p)
    mounts = [m for m in out["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == TOKEN_MOUNT_PATH]
    assert mounts == [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]


def test_image_pull_secrets_from_account():
    assert create(pod(serviceAccountName="puller"))["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


# ---- DefaultTolerationSeconds ----------------------------------------------------

def test_default_tolerations_added():
    out = create(pod(tolerations=[{"key": "virtual-kubelet.io/provider", "value": "mock",
                                   "effect": "NoSchedule"}]))
    assert out["spec"]["tolerations"] == [
        {"key": "virtual-kubelet.io/provider", "value": "mock", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]


@pytest.mark.parametrize("tolerations,added", [
    ([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 5}], ["node.kubernetes.io/unreachable"]),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}], ["node.kubernetes.io/not-ready"]),
    ([{"operator": "Exists"}], []),
    ([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}],
     ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]),
])
def test_default_tolerations_respect_existing(tolerations, added):
    out = create(pod(tolerations=tolerations))
    extra = [t["key"] for t in out["spec"]["tolerations"][len(tolerations):]]
    assert extra == added


# ---- defaults ----------------------------------------------------------------------

def test_api_defaults_filled_in():
    p = pod()
    p["spec"]["containers"][0]["resources"] = {"limits": {"memory": "256Mi"}}
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    out = create(p)
    spec = out["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["imagePullPolicy"] == "Always"                       # no tag
    assert spec["initContainers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == {"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert spec["volumes"][0]["configMap"] == {"name": "burn", "defaultMode": 420}
    assert out["status"] == {"phase": "Pending", "qosClass": "Burstable"}


def test_client_status_is_dropped_on_create():
    p = pod()
    p["status"] = {"phase": "Running"}
    assert create(p)["status"]["phase"] == "Pending"


@pytest.mark.parametrize("resources,qos", [
    ({}, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
])
def test_qos_class(resources, qos):
    p = pod(initContainers=[])
    p["spec"]["containers"][0]["resources"] = resources
    assert create(p)["status"]["qosClass"] == qos


# ---- validation ----------------------------------------------------------------------

@pytest.mark.parametrize("mutate,field,reason", [
    (lambda p: p["spec"].update(containers=[]), "spec.containers", "FieldValueRequired"),
    (lambda p: p["spec"]["containers"].append({"name": "c1", "image": "x"}),
     "spec.containers[1].name", "FieldValueDuplicate"),
    (lambda p: p["spec"]["initContainers"][0].update(name="c1"),
     "spec.containers[0].name", "FieldValueDuplicate"),
    (lambda p: p["spec"]["containers"][0].update(name="Bad_Name"), "spec.containers[0].name", "FieldValueInvalid"),
    (lambda p: p["spec"]["containers"][0].pop("image"), "spec.containers[0].image", "FieldValueRequired"),
    (lambda p: p["spec"]["containers"][0]["volumeMounts"].append({"name": "nope", "mountPath": "/x"}),
     "spec.containers[0].volumeMounts[1].name", "FieldValueNotFound"),
    (lambda p: p["spec"]["containers"][0]["volumeMounts"].append({"name": "burn", "mountPath": "stress/job1"}),
     "spec.containers[0].volumeMounts[1].mountPath", "FieldValueInvalid"),
    (lambda p: p["spec"]["volumes"].append({"name": "burn", "emptyDir": {}}),
     "spec.volumes[1].name", "FieldValueDuplicate"),
    (lambda p: p["spec"].update(restartPolicy="Sometimes"), "spec.restartPolicy", "FieldValueNotSupported"),
    (lambda p: p["metadata"].update(name="Not_A_Name"), "metadata.name", "FieldValueInvalid"),
    (lambda p: p["spec"]["containers"][0].update(env=[{"value": "x"}]),
     "spec.containers[0].env[0].name", "FieldValueRequired"),
    (lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 70000}]),
     "spec.containers[0].ports[0].containerPort", "FieldValueInvalid"),
    (lambda p: p["spec"].update(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
     "spec.tolerations[0].operator", "FieldValueInvalid"),
    (lambda p: p["spec"].update(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds", "FieldValueInvalid"),
])
def test_invalid_pods(mutate, field, reason):
    p = pod()
    mutate(p)
    with pytest.raises(AdmissionError) as err:
        create(p)
    causes = invalid_fields(err.value)
    assert field in causes, causes
    assert causes[field]["reason"] == reason
    assert err.value.message.startswith('Pod "')
    assert err.value.details["kind"] == "Pod"


def test_invalid_message_format():
    p = pod(containers=[])
    with pytest.raises(AdmissionError) as err:
        create(p)
    assert err.value.message == 'Pod "p" is invalid: spec.containers: Required value'
    p = pod()
    p["spec"]["containers"].append({"name": "c1"})
    with pytest.raises(AdmissionError) as err:
        create(p)
    assert err.value.message == ('Pod "p" is invalid: [spec.containers[1].name: Duplicate value: "c1", '
                                 'spec.containers[1].image: Required value]')


# ---- pod updates -----------------------------------------------------------------------

def stored(**spec):
    return create(pod(activeDeadlineSeconds=100, tolerations=[{"key": "a", "operator": "Exists"}], **spec))


def update(old, mutate):
    new = copy.deepcopy(old)
    mutate(new)
    return admit_update("pods", old, new, VIEW)


@pytest.mark.parametrize("mutate", [
    lambda p: p["spec"]["containers"][0].update(image="other"),
    lambda p: p["spec"]["initContainers"][0].update(image="other"),
    lambda p: p["spec"].update(activeDeadlineSeconds=50),
    lambda p: p["spec"]["tolerations"].append({"key": "b", "operator": "Exists"}),
    lambda p: p["metadata"].setdefault("labels", {}).update(x="y"),
    lambda p: p["status"].update(phase="Running"),
])
def test_allowed_pod_updates(mutate):
    update(stored(), mutate)


@pytest.mark.parametrize("mutate,field", [
    (lambda p: p["spec"]["containers"][0].update(command=["sh"]), "spec"),
    (lambda p: p["spec"].update(restartPolicy="Never"), "spec"),
    (lambda p: p["spec"]["containers"].append({"name": "c2", "image": "x"}), "spec"),
    (lambda p: p["spec"].update(nodeSelector={"a": "b"}), "spec"),
    (lambda p: p["spec"].update(activeDeadlineSeconds=200), "spec.activeDeadlineSeconds"),
    (lambda p: p["spec"].pop("activeDeadlineSeconds"), "spec.activeDeadlineSeconds"),
    (lambda p: p["spec"].update(tolerations=[]), "spec.tolerations"),
    (lambda p: p["spec"].update(terminationGracePeriodSeconds=1), "spec"),
])
def test_forbidden_pod_updates(mutate, field):
    with pytest.raises(AdmissionError) as err:
        update(stored(), mutate)
    causes = invalid_fields(err.value)
    assert field in causes
    if field == "spec":
        assert causes["spec"]["reason"] == "FieldValueForbidden"
        assert err.value.message.startswith(
            'Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than '
            "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
            "`spec.tolerations` (only additions to existing tolerations),"
            "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def test_grace_period_negative_to_one_allowed():
    old = stored(terminationGracePeriodSeconds=-1)
    update(old, lambda p: p["spec"].update(terminationGracePeriodSeconds=1))


def test_replacing_with_undefaulted_spec_is_refused_like_upstream():
    """kubectl replace with the original manifest loses the injected token volume."""
    old = stored()
    new = pod(activeDeadlineSeconds=100, tolerations=old["spec"]["tolerations"])
    with pytest.raises(AdmissionError):
        admit_update("pods", old, new, VIEW)


def test_status_subresource_keeps_spec():
    old = stored()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["command"] = ["evil"]
    new["status"]["phase"] = "Running"
    out = admit_update("pods/status", old, new, VIEW)
    assert out["spec"] == old["spec"] and out["status"]["phase"] == "Running"


# ---- other resources -----------------------------------------------------------------

def meta(name, namespace="default"):
    return {"name": name, "namespace": namespace}


def test_secret_string_data_folded_into_data():
    out = create({"metadata": meta("s"), "data": {"a": base64.b64encode(b"1").decode()},
                  "stringData": {"hello.sh": "echo hi\n"}}, "secrets")
    assert "stringData" not in out
    assert base64.b64decode(out["data"]["hello.sh"]) == b"echo hi\n"
    assert out["data"]["a"] == "MQ=="
    assert out["type"] == "Opaque"


def test_secret_bad_base64_is_bad_request():
    with pytest.raises(AdmissionError) as err:
        create({"metadata": meta("s"), "data": {"a": "not base64!"}}, "secrets")
    assert err.value.code == 400 and err.value.reason == "BadRequest"


@pytest.mark.parametrize("resource,obj,field", [
    ("configmaps", {"metadata": meta("Bad"), "data": {}}, "metadata.name"),
    ("configmaps", {"metadata": meta("ok"), "data": {"bad key": "x"}}, "data[bad key]"),
    ("configmaps", {"metadata": meta("ok"), "data": {"k": "x"}, "binaryData": {"k": "eA=="}}, "binaryData[k]"),
    ("secrets", {"metadata": meta("a_b")}, "metadata.name"),
    ("namespaces", {"metadata": {"name": "a.b"}}, "metadata.name"),
    ("namespaces", {"metadata": {"name": "x" * 64}}, "metadata.name"),
    ("serviceaccounts", {"metadata": meta("UP")}, "metadata.name"),
])
def test_name_and_key_validation(resource, obj, field):
    with pytest.raises(AdmissionError) as err:
        create(obj, resource)
    assert field in invalid_fields(err.value)


def test_valid_simple_objects_pass():
    assert create({"metadata": meta("my.config"), "data": {"a.b_c-d": "1"}}, "configmaps")
    assert create({"metadata": {"name": "team-a"}}, "namespaces")
    assert create({"metadata": meta("x")}, "leases") == {"metadata": meta("x")}


def deployment(selector=None, labels=None, replicas=3):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("ticker"),
            "spec": {"replicas": replicas,
                     "selector": selector if selector is not None else {"matchLabels": {"app": "ticker"}},
                     "template": {"metadata": {"labels": labels if labels is not None else {"app": "ticker"}},
                                  "spec": {"containers": [{"name": "tick", "image": "server"}]}}}}


def test_deployment_defaults():
    d = deployment()
    del d["spec"]["replicas"]
    out = create(d, "deployments")
    assert out["spec"]["replicas"] == 1
    assert out["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert out["spec"]["revisionHistoryLimit"] == 10
    assert out["spec"]["progressDeadlineSeconds"] == 600
    assert out["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert "serviceAccountName" not in out["spec"]["template"]["spec"]


@pytest.mark.parametrize("d,field", [
    (deployment(labels={"app": "other"}), "spec.template.metadata.labels"),
    (deployment(selector={}), "spec.selector"),
    (deployment(replicas=-1), "spec.replicas"),
])
def test_invalid_deployments(d, field):
    with pytest.raises(AdmissionError) as err:
        create(d, "deployments")
    causes = invalid_fields(err.value)
    assert field in causes
    assert err.value.details.get("group") == "apps"
    assert err.value.message.startswith('Deployment.apps "ticker" is invalid')


def test_deployment_selector_mismatch_message():
    with pytest.raises(AdmissionError) as err:
        create(deployment(labels={"app": "other"}), "deployments")
    assert "`selector` does not match template `labels`" in err.value.message


def test_deployment_selector_immutable_and_scale_allowed():
    old = create(deployment(), "deployments")
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert admit_update("deployments", old, new, VIEW)["spec"]["replicas"] == 5
    new["spec"]["selector"] = {"matchLabels": {"app": "ticker", "x": "y"}}
    new["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    with pytest.raises(AdmissionError) as err:
        admit_update("deployments", old, new, VIEW)
    assert "field is immutable" in err.value.message
