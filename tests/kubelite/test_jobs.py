"""kubelite's Job controller through the real client, with no node: the test ends pods as a kubelet would.

Pods are marked Succeeded/Failed through the status subresource; the controller
must create, count and finish the way kube-controller-manager does.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.kubelite.test_controllers import now, wait_for

INDEX = "batch.kubernetes.io/job-completion-index"


@pytest.fixture(scope="module")
def core(kube_client, control_plane):
    if not control_plane.controllers_running:
        pytest.skip("control plane runs without controllers")
    return client.CoreV1Api(kube_client)


@pytest.fixture(scope="module")
def batch(kube_client):
    return client.BatchV1Api(kube_client)


def job_body(name, **spec):
    template = {"spec": {"restartPolicy": "Never", "nodeName": "nowhere",
                         "containers": [{"name": "c", "image": "none", "command": ["true"]}]}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": template, **spec}}


def job_pods(core, ns, name, active_only=True):
    pods = core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={name}").items
    if active_only:
        pods = [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]
    return sorted(pods, key=lambda p: p.metadata.name)


def end_pod(core, ns, pod, phase, exit_code=0, conditions=None):
    state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                            "startedAt": now(), "finishedAt": now()}}
    status = {"phase": phase, "containerStatuses": [{"name": "c", "ready": False, "restartCount": 0,
                                                     "image": "none", "imageID": "", "state": state}]}
    if conditions:
        status["conditions"] = conditions
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": status})


def conditions(batch, ns, name):
    job = batch.read_namespaced_job_status(name, ns)
    return {c.type: c for c in job.status.conditions or []}, job.status


def test_completions_and_parallelism(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("work", parallelism=2, completions=3))
    pods = wait_for(lambda: len(job_pods(core, namespace, "work")) == 2 and job_pods(core, namespace, "work"),
                    what="two active pods")
    job = batch.read_namespaced_job("work", namespace)
    pod = pods[0]
    ref = pod.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("Job", "work", job.metadata.uid, True)
    for label in ("job-name", "batch.kubernetes.io/job-name"):
        assert pod.metadata.labels[label] == "work"
    for label in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        assert pod.metadata.labels[label] == job.metadata.uid
    for p in pods:
        end_pod(core, namespace, p, "Succeeded")
    # one more pod for the third completion, never more than that
    last = wait_for(lambda: job_pods(core, namespace, "work"), what="third pod")
    assert len(last) == 1
    wait_for(lambda: conditions(batch, namespace, "work")[1].succeeded == 2, what="succeeded 2")
    assert not conditions(batch, namespace, "work")[0].get("Complete")
    end_pod(core, namespace, last[0], "Succeeded")
    conds, status = wait_for(lambda: "Complete" in conditions(batch, namespace, "work")[0]
                             and conditions(batch, namespace, "work"), what="Complete")
    assert status.succeeded == 3 and status.active == 0 and not status.failed
    assert status.start_time and status.completion_time
    assert "SuccessCriteriaMet" in conds
    # a finished job's pods are not re-created, even when deleted
    for p in job_pods(core, namespace, "work", active_only=False):
        core.delete_namespaced_pod(p.metadata.name, namespace, grace_period_seconds=0)
    wait_for(lambda: not job_pods(core, namespace, "work", active_only=False), what="pods gone")

    time.sleep(1.0)
    assert not job_pods(core, namespace, "work", active_only=False)
    assert conditions(batch, namespace, "work")[1].succeeded == 3


def test_indexed_job_gets_index_annotation_and_env(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("idx", parallelism=3, completions=3,
                                                    completionMode="Indexed"))
    pods = wait_for(lambda: len(job_pods(core, namespace, "idx")) == 3 and job_pods(core, namespace, "idx"),
                    what="three pods")
    by_index = {int(p.metadata.annotations[INDEX]): p for p in pods}
    assert sorted(by_index) == [0, 1, 2]
    for index, pod in by_index.items():
        assert pod.metadata.name.startswith(f"idx-{index}-")
        env = {e.name: e for e in pod.spec.containers[0].env}
        ref = env["JOB_COMPLETION_INDEX"].value_from.field_ref.field_path
        assert ref == f"metadata.labels['{INDEX}']" and pod.metadata.labels[INDEX] == str(index)
    # index 1 fails: it alone is re-created, with the same index
    end_pod(core, namespace, by_index[1], "Failed", exit_code=3)
    end_pod(core, namespace, by_index[0], "Succeeded")
    again = wait_for(lambda: [p for p in job_pods(core, namespace, "idx")
                              if p.metadata.name != by_index[1].metadata.name
                              and p.metadata.name != by_index[2].metadata.name], what="replacement")
    assert [p.metadata.annotations[INDEX] for p in again] == ["1"]
    end_pod(core, namespace, again[0], "Succeeded")
    end_pod(core, namespace, by_index[2], "Succeeded")
    _, status = wait_for(lambda: "Complete" in conditions(batch, namespace, "idx")[0]
                         and conditions(batch, namespace, "idx"), what="Complete")
    assert status.succeeded == 3 and status.failed == 1 and status.completed_indexes == "0-2"


def test_backoff_limit_fails_the_job(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("flaky", backoffLimit=1))
    for attempt in range(2):
        pod = wait_for(lambda: job_pods(core, namespace, "flaky"), what=f"attempt {attempt}")[0]
        end_pod(core, namespace, pod, "Failed", exit_code=1)
        wait_for(lambda: conditions(batch, namespace, "flaky")[1].failed == attempt + 1, what="failed count")
    conds, status = wait_for(lambda: "Failed" in conditions(batch, namespace, "flaky")[0]
                             and conditions(batch, namespace, "flaky"), what="Failed")
    assert conds["Failed"].reason == "BackoffLimitExceeded" and conds["FailureTarget"].reason == "BackoffLimitExceeded"
    assert status.failed == 2 and status.active == 0 and "Complete" not in conds

    time.sleep(1.0)
    assert not job_pods(core, namespace, "flaky")  # no new attempt after the job failed


POLICY = {"rules": [
    {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
]}


def test_pod_failure_policy_ignores_disruption(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("drained", backoffLimit=0, podFailurePolicy=POLICY))
    pod = wait_for(lambda: job_pods(core, namespace, "drained"), what="pod")[0]
    end_pod(core, namespace, pod, "Failed", exit_code=143, conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
         "message": "node drain", "lastTransitionTime": now()}])
    # not counted against backoffLimit 0: replaced, the job goes on
    new = wait_for(lambda: [p for p in job_pods(core, namespace, "drained")
                            if p.metadata.name != pod.metadata.name], what="replacement")
    _, status = conditions(batch, namespace, "drained")
    assert not status.failed and not (status.conditions or [])
    end_pod(core, namespace, new[0], "Succeeded")
    _, status = wait_for(lambda: "Complete" in conditions(batch, namespace, "drained")[0]
                         and conditions(batch, namespace, "drained"), what="Complete")
    assert status.succeeded == 1 and not status.failed


def test_without_the_rule_a_disruption_counts(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("counted", backoffLimit=0))
    pod = wait_for(lambda: job_pods(core, namespace, "counted"), what="pod")[0]
    end_pod(core, namespace, pod, "Failed", exit_code=143, conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
         "message": "node drain", "lastTransitionTime": now()}])
    conds, status = wait_for(lambda: "Failed" in conditions(batch, namespace, "counted")[0]
                             and conditions(batch, namespace, "counted"), what="Failed")
    assert conds["Failed"].reason == "BackoffLimitExceeded" and status.failed == 1


def test_pod_failure_policy_fail_job_on_exit_code(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("fatal", backoffLimit=5, podFailurePolicy=POLICY))
    pod = wait_for(lambda: job_pods(core, namespace, "fatal"), what="pod")[0]
    end_pod(core, namespace, pod, "Failed", exit_code=42)
    conds, status = wait_for(lambda: "Failed" in conditions(batch, namespace, "fatal")[0]
                             and conditions(batch, namespace, "fatal"), what="Failed")
    assert conds["Failed"].reason == "PodFailurePolicy" and status.failed == 1


def test_deleting_the_job_deletes_its_pods(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("gone", parallelism=2, completions=2))
    wait_for(lambda: len(job_pods(core, namespace, "gone")) == 2, what="pods")
    batch.delete_namespaced_job("gone", namespace, propagation_policy="Background")
    # bound pods wait for their kubelet: deleted means marked with a deletionTimestamp
    wait_for(lambda: all(p.metadata.deletion_timestamp for p in job_pods(core, namespace, "gone", active_only=False)),
             timeout=10, what="pods deleted")


def test_kubectl_get_jobs_prints_status_and_completions(core, batch, kubectl, namespace):
    batch.create_namespaced_job(namespace, job_body("shown", parallelism=1, completions=2))
    pod = wait_for(lambda: job_pods(core, namespace, "shown"), what="pod")[0]
    end_pod(core, namespace, pod, "Succeeded")
    wait_for(lambda: conditions(batch, namespace, "shown")[1].succeeded == 1, what="succeeded 1")
    out = kubectl("get", "jobs", "-n", namespace, check=True).stdout.splitlines()
    assert out[0].split()[:4] == ["NAME", "STATUS", "COMPLETIONS", "DURATION"]
    assert out[1].split()[:3] == ["shown", "Running", "1/2"]
    second = wait_for(lambda: job_pods(core, namespace, "shown"), what="second pod")[0]
    end_pod(core, namespace, second, "Succeeded")
    wait_for(lambda: "Complete" in conditions(batch, namespace, "shown")[0], what="Complete")
    row = kubectl("get", "jobs", "shown", "-n", namespace, check=True).stdout.splitlines()[1].split()
    assert row[:3] == ["shown", "Complete", "2/2"]
    described = kubectl("describe", "job", "shown", "-n", namespace, check=True).stdout
    assert "Pods Statuses:" in described and "2 Succeeded" in described


def test_on_failure_restarts_count_toward_backoff_limit(core, batch, namespace):
    body = job_body("restarts", backoffLimit=1)
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    batch.create_namespaced_job(namespace, body)
    pod = wait_for(lambda: job_pods(core, namespace, "restarts"), what="pod")[0]

    def running(restarts):
        return {"status": {"phase": "Running", "containerStatuses": [{
            "name": "c", "ready": True, "restartCount": restarts, "image": "none", "imageID": "",
            "state": {"running": {"startedAt": now()}}}]}}

    core.patch_namespaced_pod_status(pod.metadata.name, namespace, running(1))
    time.sleep(0.5)
    assert "Failed" not in conditions(batch, namespace, "restarts")[0]  # 1 restart is within backoffLimit 1
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, running(2))
    conds, _ = wait_for(lambda: "Failed" in conditions(batch, namespace, "restarts")[0]
                        and conditions(batch, namespace, "restarts"), what="Failed")
    assert conds["Failed"].reason == "BackoffLimitExceeded"
    # the still-running pod is deleted (marked: its kubelet would confirm)
    wait_for(lambda: core.read_namespaced_pod(pod.metadata.name, namespace).metadata.deletion_timestamp,
             what="pod deletion")


def test_a_pod_deleted_before_it_finished_counts_as_failed(core, batch, namespace):
    batch.create_namespaced_job(namespace, job_body("evicted", backoffLimit=3))
    pod = wait_for(lambda: job_pods(core, namespace, "evicted"), what="pod")[0]
    core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    wait_for(lambda: conditions(batch, namespace, "evicted")[1].failed == 1, what="failed 1")
    new = wait_for(lambda: [p for p in job_pods(core, namespace, "evicted") if p.metadata.name != pod.metadata.name],
                   what="replacement")
    end_pod(core, namespace, new[0], "Succeeded")
    _, status = wait_for(lambda: "Complete" in conditions(batch, namespace, "evicted")[0]
                         and conditions(batch, namespace, "evicted"), what="Complete")
    assert status.succeeded == 1 and status.failed == 1
