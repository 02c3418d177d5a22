"""Jobs, as kube-controller-manager's Job controller runs them (no back-off delay, no suspend).

Owns: Job -> Pods (controller ownerReference, `job-name`/`controller-uid`
labels, Indexed jobs' `job-completion-index` annotation and
`JOB_COMPLETION_INDEX` env); at most `parallelism` active, done at
`completions` successes (one per index when Indexed); `backoffLimit`
(failed pods plus container restarts of OnFailure pods); `podFailurePolicy`
(FailJob / Ignore / Count on exit codes and pod conditions); status and the
SuccessCriteriaMet/Complete or FailureTarget/Failed conditions.  Finished
pods are remembered by uid in memory, so deleting one does not un-count it;
a pod deleted before it finished counts as failed (unless a podFailurePolicy
is set: then only terminal pods are judged, by its rules).
"""

from __future__ import annotations

import threading
import time

from .deployments import controller_of
from .base import Worker
from .informers import Informers
from .kube import Kube, KubeError, now_rfc3339, obj_key


INDEX_KEY = "batch.kubernetes.io/job-completion-index"
_EXPECTATION_TTL = 30.0


def _terminated_codes(pod: dict, container: str | None) -> list[int]:
    status = pod.get("status") or {}
    codes = []
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if container and cs.get("name") != container:
            continue
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term and term.get("exitCode") not in (None, 0):
            codes.append(int(term["exitCode"]))
    return codes


def _rule_matches(rule: dict, pod: dict) -> bool:
    codes = rule.get("onExitCodes")
    if codes:
        values = set(codes.get("values") or [])
        found = _terminated_codes(pod, codes.get("containerName"))
        if codes.get("operator") == "NotIn":
            return any(c not in values for c in found)
        return any(c in values for c in found)
    for want in rule.get("onPodConditions") or []:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == want.get("type") and cond.get("status") == want.get("status", "True"):
                return True
    return False


def failure_action(policy: dict | None, pod: dict) -> str:
    """The podFailurePolicy action for a failed pod: FailJob, Ignore or Count (no rule matched)."""
    for rule in (policy or {}).get("rules") or []:
        if _rule_matches(rule, pod):
            return rule.get("action", "Count")
    return "Count"


def _index(pod: dict) -> int | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def compress_indexes(indexes) -> str:
    """`0-2,4`: the completedIndexes form."""
    out, run = [], []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _finished(job: dict) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _cond(ctype: str, reason: str, message: str) -> dict:
    now = now_rfc3339()
    return {"type": ctype, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": now, "lastTransitionTime": now}


class JobController(Worker):
    """One named worker thread syncing Jobs by `namespace/name` key."""

    def __init__(self, kube: Kube, informers: Informers, stop: threading.Event):
        super().__init__("kubelite-jobs", stop)
        self.kube = kube
        self.jobs = informers.get("/apis/batch/v1/jobs", "jobs")
        self.pods = informers.get("/api/v1/pods", "pods")
        self._lock = threading.Lock()
        self._outcomes: dict[str, dict[str, tuple[str, int | None]]] = {}  # job uid -> pod uid -> (outcome, index)
        self._expect: dict[str, tuple[set[str], float]] = {}  # job key -> (created names unseen, since)
        self._observed: dict[str, set[str]] = {}  # job key -> pod names the informer reported since the last sync
        self.jobs.add_handler(self._on_job)
        self.pods.add_handler(self._on_pod)

    def _on_job(self, event: str, job: dict, old: dict | None) -> None:
        if event == "DELETED":
            with self._lock:
                self._outcomes.pop((job.get("metadata") or {}).get("uid"), None)
        self.queue.add(obj_key(job))

    def _on_pod(self, event: str, pod: dict, old: dict | None) -> None:
        owner = controller_of(pod)
        if owner and owner.get("kind") == "Job":
            key = f"{(pod.get('metadata') or {}).get('namespace', '')}/{owner.get('name')}"
            with self._lock:  # seen, even if deleted before the next sync looks at the cache
                self._observed.setdefault(key, set()).add(pod["metadata"].get("name"))
            if event == "DELETED" and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                with self._lock:  # gone before it finished: upstream counts it as failed
                    self._outcomes.setdefault(owner.get("uid"), {}).setdefault(
                        pod["metadata"].get("uid"), ("deleted", _index(pod)))
            self.queue.add(key)

    # -- sync ----------------------------------------------------------------------

    what = "sync job"

    def handle(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            self._expect.pop(key, None)
            with self._lock:
                self._observed.pop(key, None)
            return
        meta, spec = job["metadata"], job.get("spec") or {}
        ns, uid = meta.get("namespace", "default"), meta.get("uid")
        pods = [p for p in self.pods.items() if (controller_of(p) or {}).get("uid") == uid]
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if _finished(job):
            self._delete_pods(ns, active)
            return
        with self._lock:
            outcomes = dict(self._outcomes.get(uid, {}))
        policy = spec.get("podFailurePolicy")
        fail_reason = None
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            puid = pod["metadata"].get("uid")
            if phase not in ("Succeeded", "Failed") or puid in outcomes:
                continue
            if phase == "Succeeded":
                outcomes[puid] = ("succeeded", _index(pod))
                continue
            action = failure_action(policy, pod)
            outcomes[puid] = ("ignored" if action == "Ignore" else "failed", _index(pod))
            if action == "FailJob":
                fail_reason = ("PodFailurePolicy", f"Container of pod {ns}/{pod['metadata']['name']} "
                               "matched a FailJob rule of the pod failure policy")
        with self._lock:
            self._outcomes.setdefault(uid, {}).update(outcomes)
        failed = sum(1 for o, _ in outcomes.values() if o == "failed" or (o == "deleted" and not policy))
        succeeded_pods = sum(1 for o, _ in outcomes.values() if o == "succeeded")
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        done_indexes = {i for o, i in outcomes.values() if o == "succeeded" and i is not None}
        succeeded = len(done_indexes) if indexed else succeeded_pods
        restarts = 0
        if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
            restarts = sum(int(cs.get("restartCount") or 0) for p in active
                           for cs in (p.get("status") or {}).get("containerStatuses") or [])
        if fail_reason is None and failed + restarts > int(spec.get("backoffLimit", 6)):
            fail_reason = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        complete = (completions is not None and succeeded >= int(completions)) or \
                   (completions is None and succeeded_pods > 0 and not active)
        if fail_reason is None and not complete:
            active = active + self._reconcile(job, active, done_indexes, succeeded, parallelism)
        elif active:
            self._delete_pods(ns, active)
        self._write_status(job, len(active) if fail_reason is None and not complete else 0,
                           succeeded, failed, done_indexes if indexed else None, fail_reason, complete)

    def _reconcile(self, job: dict, active: list[dict], done_indexes: set[int], succeeded: int,
                   parallelism: int) -> list[dict]:
        """Create the pods still wanted; returns stand-ins for those created (counted as active)."""
        key, spec = obj_key(job), job.get("spec") or {}
        present = {p["metadata"]["name"] for p in self.pods.items()
                   if (controller_of(p) or {}).get("uid") == job["metadata"].get("uid")}
        unseen, since = self._expect.get(key, (set(), time.monotonic()))
        if time.monotonic() - since > _EXPECTATION_TTL:
            unseen = set()
        with self._lock:
            observed = self._observed.pop(key, set())
        unseen -= present | observed
        completions = spec.get("completions")
        want = parallelism if completions is None else min(parallelism, int(completions) - succeeded)
        to_create = max(0, want - len(active) - len(unseen))
        indexes: list[int | None] = [None] * to_create
        if spec.get("completionMode") == "Indexed":
            busy = {_index(p) for p in active} | {int(n.rsplit("-", 2)[-2]) for n in unseen if "-" in n}
            free = [i for i in range(int(completions or 0)) if i not in done_indexes and i not in busy]
            indexes = free[:to_create]
        created = []
        for index in indexes:
            if self.stop_event.is_set():
                break
            created.append(self._create_pod(job, index))
            unseen.add(created[-1]["metadata"]["name"])
        self._expect[key] = (unseen, time.monotonic() if created else since)
        return created

    def _create_pod(self, job: dict, index: int | None) -> dict:
        meta, spec = job["metadata"], job.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update({"batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"],
                       "batch.kubernetes.io/controller-uid": meta["uid"], "controller-uid": meta["uid"]})
        annotations = dict(tmeta.get("annotations") or {})
        pod_spec = dict(template.get("spec") or {})
        generate = f"{meta['name']}-"
        if index is not None:
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            generate = f"{meta['name']}-{index}-"
            env = {"name": "JOB_COMPLETION_INDEX",
                   "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{INDEX_KEY}']"}}}
            pod_spec["containers"] = [dict(c, env=list(c.get("env") or []) + [env])
                                      for c in pod_spec.get("containers") or []]
            if pod_spec.get("initContainers"):
                pod_spec["initContainers"] = [dict(c, env=list(c.get("env") or []) + [env])
                                              for c in pod_spec["initContainers"]]
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": generate, "namespace": meta.get("namespace"), "labels": labels,
                             "annotations": annotations,
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                  "uid": meta["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "spec": pod_spec}
        return self.kube.create(f"/api/v1/namespaces/{meta.get('namespace')}/pods", body)

    def _delete_pods(self, ns: str, pods: list[dict]) -> None:
        for pod in pods:
            try:
                self.kube.delete(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")
            except KubeError as exc:
                if exc.status != 404:
                    raise

    def _write_status(self, job: dict, active: int, succeeded: int, failed: int, indexes: set[int] | None,
                      fail_reason: tuple[str, str] | None, complete: bool) -> None:
        meta, current = job["metadata"], dict(job.get("status") or {})
        status = dict(current)
        status.update({"active": active, "succeeded": succeeded, "failed": failed})
        status.setdefault("startTime", now_rfc3339())
        if indexes is not None:
            status["completedIndexes"] = compress_indexes(indexes)
        conditions = list(current.get("conditions") or [])
        if fail_reason is not None:
            conditions += [_cond("FailureTarget", *fail_reason), _cond("Failed", *fail_reason)]
        elif complete:
            conditions += [_cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                           _cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
            status["completionTime"] = now_rfc3339()
        status["conditions"] = conditions
        status = {k: v for k, v in status.items() if v not in (0, [], "") or k in ("active", "succeeded", "failed")}
        if status == current:
            return
        try:
            self.kube.patch(f"/apis/batch/v1/namespaces/{meta.get('namespace')}/jobs/{meta['name']}/status",
                            {"status": status})
        except KubeError as exc:
            if exc.status != 404:
                raise
