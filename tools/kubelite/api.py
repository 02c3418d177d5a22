"""REST semantics of kubelite: what get/list/create/update/patch/delete mean.

Owns the generic registry behaviour of the apiserver over :class:`~.store.Store`:
namespace existence, defaults/validation/admission order, optimistic
concurrency with retry (GuaranteedUpdate), no-op writes skipped, status
subresource isolation, graceful pod deletion, finalizers, namespace deletion
and owner-reference cascading. Inputs are decoded dicts; outputs are store
entries or dicts; errors are :class:`~.errors.ApiError`. No HTTP here.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import time

from . import errors, policy, quantity, strategy
from .nodeauthz import NodeAuthorizer
from .nodegraph import NodeGraph
from .resources import RESOURCES, Resource, by_key
from .store import Entry, Store, StoreView, encode, rfc3339

log = logging.getLogger(__name__)

#: Owner bucket -> buckets whose objects it may own (the garbage collector's work).
_DEPENDENTS = {"deployments": ("replicasets",), "replicasets": ("pods",), "jobs": ("pods",)}
_NAMESPACED_KEYS = tuple(dict.fromkeys(r.key for r in RESOURCES if r.namespaced))
_TERMINAL = ("Succeeded", "Failed")


def _same(a: dict, b: dict) -> bool:
    """Equal apart from resourceVersion/generation (a write would change nothing)."""
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        if k == "metadata":
            ma, mb = v, b[k]
            if {x: y for x, y in ma.items() if x not in ("resourceVersion", "generation")} != \
                    {x: y for x, y in mb.items() if x not in ("resourceVersion", "generation")}:
                return False
        elif v != b[k]:
            return False
    return True


def _rv(text) -> int | None:
    if text in (None, ""):
        return None
    try:
        return int(text)
    except (TypeError, ValueError):
        raise errors.bad_request(f"invalid resource version: {text!r}") from None


class Api:
    """The generic registry over one store; ``clock`` gives epoch seconds."""

    def __init__(self, store: Store, clock=time.time):
        self.store = store
        self.view = StoreView(store)
        self.node_graph = NodeGraph().attach(store)
        self.view.node_authorizer = NodeAuthorizer(self.node_graph)
        self._clock = clock
        self.field_warnings: collections.deque = collections.deque(maxlen=256)  # (user, text), newest last

    def note_field_warnings(self, user, texts: list[str]) -> None:
        """Remember fieldValidation warnings given (tests check that vkcmd's own writes never get one)."""
        name = getattr(user, "name", "")
        self.field_warnings.extend((name, t) for t in texts)

    # -- reads ---------------------------------------------------------------
    def get(self, res: Resource, ns: str, name: str) -> Entry:
        e = self.store.get(res.key, ns, name)
        if e is None:
            raise errors.not_found(res.plural, name, res.group)
        return e

    def list(self, res: Resource, ns: str | None, query: dict) -> tuple[int, list[Entry]]:
        label = policy.label_selector(query.get("labelSelector"))
        field = policy.field_selector(query.get("fieldSelector"), res.plural)
        rv, entries = self.store.list(res.key, ns or None)
        if label is not None:
            entries = [e for e in entries if label.matches((e.obj["metadata"].get("labels") or {}))]
        if field is not None:
            entries = [e for e in entries if field.matches(e.obj)]
        return rv, entries

    def list_page(self, res: Resource, ns: str | None, query: dict) -> tuple[int, list[Entry], str, int | None]:
        """``limit``/``continue`` paging: (rv, page, continue token, remainingItemCount).

        The token names the list's resourceVersion and the last key served; a token whose
        resourceVersion is older than the kept history is expired (410), as after an etcd compaction.
        """
        token, limit_text = query.get("continue") or "", query.get("limit") or ""
        try:
            limit = int(limit_text) if limit_text else 0
        except ValueError:
            raise errors.bad_request(f"invalid limit: {limit_text!r}") from None
        start: tuple[str, str] | None = None
        token_rv = None
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                token_rv, start = int(state["rv"]), (state["start"][0], state["start"][1])
            except (ValueError, KeyError, TypeError, IndexError):
                raise errors.bad_request("continue key is not valid: invalid continue token") from None
            if token_rv < self.store.floor(res.key):
                raise errors.gone("The provided continue parameter is too old to display a consistent list "
                                  "result. You can start a new list without the continue parameter.")
        rv, entries = self.list(res, ns, query)
        if start is not None:
            entries = [e for e in entries if (e.obj["metadata"].get("namespace", ""), e.obj["metadata"]["name"])
                       > start]
            rv = token_rv
        if limit <= 0 or len(entries) <= limit:
            return rv, entries, "", None
        page = entries[:limit]
        last = page[-1].obj["metadata"]
        nxt = base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": [last.get("namespace", ""),
                                                                       last["name"]]}).encode()).decode()
        return rv, page, nxt, len(entries) - limit

    def matcher(self, res: Resource, query: dict):
        """A predicate over objects for the request's selectors (None: everything matches)."""
        label = policy.label_selector(query.get("labelSelector"))
        field = policy.field_selector(query.get("fieldSelector"), res.plural)
        if label is None and field is None:
            return None

        def match(obj: dict) -> bool:
            if label is not None and not label.matches(obj["metadata"].get("labels") or {}):
                return False
            return field is None or field.matches(obj)
        return match

    # -- create --------------------------------------------------------------
    def require_namespace(self, ns: str) -> None:
        e = self.store.get("namespaces", "", ns)
        if e is None:
            raise errors.not_found("namespaces", ns)
        if e.obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {ns} because it is being terminated",
                {"name": ns, "kind": "namespaces",
                 "causes": [{"reason": "NamespaceTerminating",
                             "message": f"namespace {ns} is being terminated",
                             "field": "metadata.namespace"}]})

    def create(self, res: Resource, ns: str, obj, *, dry_run: bool = False, user=None) -> dict:
        """Create ``obj`` (decoded body) in ``ns``; returns the stored object."""
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        strategy.default(res, obj)
        strategy.validate(res, obj, creating=True)
        if res.namespaced:
            self.require_namespace(ns)
        strategy.prepare_create(res, obj)
        quantity.canonicalize(res.key, obj)
        policy.restrict(user, "create", res.key, None, obj, None, self.view)
        obj = policy.admit_create(res.key, obj, self.view)
        if dry_run:
            return obj
        return self.store.create(res.key, obj, resource=res.plural, group=res.group).obj

    # -- update --------------------------------------------------------------
    def write(self, res: Resource, ns: str, name: str, sub: str | None, compute, *,
              user_rv: int | None = None, dry_run: bool = False, admit: bool = True, user=None) -> Entry:
        """Read-modify-write with retry, like the apiserver's GuaranteedUpdate.

        ``compute(current_copy) -> new`` may raise. ``user_rv`` is the caller's precondition
        (409 when stale, no retry); without one, a concurrent change just retries.
        """
        for _ in range(50):
            cur = self.get(res, ns, name)
            new = compute(json.loads(cur.raw))
            if not isinstance(new, dict):
                raise errors.bad_request("the body of the request must be a JSON object")
            new["kind"], new["apiVersion"] = res.kind, res.api_version
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                meta = new["metadata"] = {}
            if meta.get("name") not in (None, "", name):
                raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on "
                                         f"the URL ({name})")
            if res.namespaced and meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            uid = cur.obj["metadata"]["uid"]
            if meta.get("uid") not in (None, "", uid):
                raise errors.conflict(res.plural, name, f"Precondition failed: UID in precondition: {meta['uid']}, "
                                      f"UID in object meta: {uid}", res.group)
            if user_rv is not None and user_rv != cur.rv:
                raise errors.conflict(res.plural, name, errors.STALE, res.group)
            meta["name"] = name
            if res.namespaced:
                meta["namespace"] = ns
            if sub != "status":
                strategy.default(res, new)
            new = strategy.prepare_update(res, cur.obj, new, sub)
            quantity.canonicalize(res.key, new)
            strategy.validate(res, new, creating=False)
            if admit:
                policy.restrict(user, "update", res.key, sub, new, cur.obj, self.view)
                new = policy.admit_update(res.key if sub is None else f"{res.key}/{sub}", cur.obj, new, self.view)
            if _same(new, cur.obj):
                return cur
            if dry_run:
                return Entry(new, encode(new), cur.rv)
            if self._should_remove(res, new):
                return self._remove(res, cur, final=new)
            try:
                return self.store.replace(res.key, ns, name, new, expect_rv=cur.rv,
                                          resource=res.plural, group=res.group)
            except errors.ApiError as e:
                if e.code == 409 and user_rv is None:
                    continue
                raise
        raise errors.ApiError(409, "Conflict", f"too many concurrent updates of {res.plural} \"{name}\"")

    @staticmethod
    def _should_remove(res: Resource, obj: dict) -> bool:
        """The apiserver's delete-during-update: deleting, grace 0 and no finalizers left."""
        meta = obj["metadata"]
        return (res.key != "namespaces" and bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
                and not meta.get("deletionGracePeriodSeconds"))

    def update(self, res: Resource, ns: str, name: str, sub: str | None, body, *, dry_run=False,
               user=None) -> Entry:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        user_rv = _rv((body.get("metadata") or {}).get("resourceVersion"))
        return self.write(res, ns, name, sub, lambda cur: body, user_rv=user_rv, dry_run=dry_run, user=user)

    def patch(self, res: Resource, ns: str, name: str, sub: str | None, kind_of_patch: str, patch, *,
              dry_run=False, user=None, check=None) -> tuple[int, Entry | dict]:
        """Apply a patch; server-side apply (``apply``) creates a missing object. Returns (code, result).

        ``check(patched) -> patched`` (fieldValidation) sees the patched object before it is written.
        """
        user_rv = None
        if isinstance(patch, dict):
            user_rv = _rv((patch.get("metadata") or {}).get("resourceVersion"))
        if kind_of_patch == "apply":
            if not isinstance(patch, dict):
                raise errors.bad_request("apply patch must be an object")
            if sub is None and self.store.get(res.key, ns, name) is None:
                body = json.loads(json.dumps(patch))
                body.setdefault("metadata", {})["name"] = name
                return 201, self.create(res, ns, body, dry_run=dry_run, user=user)
            kind_of_patch = "strategic"
        def compute(cur: dict) -> dict:
            patched = policy.apply_patch(kind_of_patch, cur, patch, res.kind)
            return check(patched) if check is not None and isinstance(patched, dict) else patched

        result = self.write(res, ns, name, sub, compute, user_rv=user_rv, dry_run=dry_run, user=user)
        return 200, result

    # -- delete --------------------------------------------------------------
    def delete(self, res: Resource, ns: str, name: str, opts: dict, *, dry_run: bool = False, user=None,
               sub: str | None = None) -> dict:
        """Delete with DeleteOptions ``opts``; returns the object (deleted, or marked for deletion)."""
        for _ in range(50):
            cur = self.get(res, ns, name)
            self._check_preconditions(res, cur, opts.get("preconditions") or {})
            policy.restrict(user, "delete" if sub is None else "create", res.key, sub, None, cur.obj, self.view)
            if dry_run:
                return cur.obj
            try:
                if res.key == "namespaces":
                    return self._delete_namespace(cur)
                return self._delete_entry(res, cur, opts)
            except errors.ApiError as e:
                if e.code == 409 and e.reason == "Conflict" and "Precondition" not in e.message:
                    continue
                raise
        raise errors.ApiError(409, "Conflict", f"too many concurrent updates of {res.plural} \"{name}\"")

    def _check_preconditions(self, res: Resource, cur: Entry, pre: dict) -> None:
        meta = cur.obj["metadata"]
        name = meta["name"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise errors.conflict(res.plural, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {meta['uid']}", res.group)
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta["resourceVersion"]:
            raise errors.conflict(res.plural, name, "Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{meta['resourceVersion']}", res.group)

    def _grace(self, res: Resource, obj: dict, requested) -> int:
        """Graceful deletion applies to pods bound to a node and not yet terminal."""
        if res.key != "pods":
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in _TERMINAL:
            return 0
        if requested is not None:
            return max(0, int(requested))
        grace = spec.get("terminationGracePeriodSeconds")
        return 30 if grace is None else max(0, int(grace))

    def _delete_entry(self, res: Resource, cur: Entry, opts: dict) -> dict:
        obj = cur.obj
        meta = obj["metadata"]
        grace = self._grace(res, obj, opts.get("gracePeriodSeconds"))
        marked = bool(meta.get("deletionTimestamp"))
        if marked:
            current = meta.get("deletionGracePeriodSeconds") or 0
            if grace >= current and not (grace == 0 and current == 0 and not meta.get("finalizers")):
                return obj  # a later delete may shorten the grace period, never lengthen it
        if grace == 0 and not meta.get("finalizers"):
            return self._remove(res, cur, policy_=opts.get("propagationPolicy")).obj
        new = json.loads(cur.raw)
        nmeta = new["metadata"]
        nmeta["deletionTimestamp"] = rfc3339(self._clock() + grace)
        nmeta["deletionGracePeriodSeconds"] = grace
        if grace == 0 and marked:
            nmeta["deletionTimestamp"] = meta["deletionTimestamp"]
        return self.store.replace(res.key, cur.obj["metadata"].get("namespace", ""), meta["name"], new,
                                  expect_rv=cur.rv, resource=res.plural, group=res.group).obj

    def _remove(self, res: Resource, cur: Entry, *, final: dict | None = None, policy_: str | None = None) -> Entry:
        meta = cur.obj["metadata"]
        ns = meta.get("namespace", "")
        entry = self.store.remove(res.key, ns, meta["name"], expect_rv=cur.rv, final=final,
                                  resource=res.plural, group=res.group)
        self._cascade(res, entry.obj, policy_ or "Background")
        if ns:
            self._maybe_finish_namespace(ns)
        return entry

    def _cascade(self, res: Resource, owner: dict, propagation: str) -> None:
        """Owner-reference garbage collection for the kinds kubelite runs (deployments, replicasets)."""
        uid = owner["metadata"]["uid"]
        ns = owner["metadata"].get("namespace", "")
        for key in _DEPENDENTS.get(res.key, ()):
            dep_res = by_key(key)
            for e in self.store.list(key, ns)[1]:
                refs = e.obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                try:
                    if propagation == "Orphan":
                        def orphan(cur, uid=uid):
                            cur["metadata"]["ownerReferences"] = [
                                r for r in cur["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                            return cur
                        self.write(dep_res, ns, e.obj["metadata"]["name"], None, orphan, admit=False)
                    else:
                        self.delete(dep_res, ns, e.obj["metadata"]["name"], {})
                except errors.ApiError as err:
                    if err.code != 404:
                        log.warning("cascading delete of %s %s/%s: %s", key, ns, e.obj["metadata"]["name"],
                                    err.message)

    # -- namespaces ----------------------------------------------------------
    def _delete_namespace(self, cur: Entry) -> dict:
        name = cur.obj["metadata"]["name"]
        if not cur.obj["metadata"].get("deletionTimestamp"):
            new = json.loads(cur.raw)
            new["metadata"]["deletionTimestamp"] = rfc3339(self._clock())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            cur = self.store.replace("namespaces", "", name, new, expect_rv=cur.rv, resource="namespaces")
            for key in _NAMESPACED_KEYS:
                res = by_key(key)
                for e in self.store.list(key, name)[1]:
                    try:
                        self.delete(res, name, e.obj["metadata"]["name"], {})
                    except errors.ApiError as err:
                        if err.code != 404:
                            log.warning("deleting %s %s/%s: %s", key, name, e.obj["metadata"]["name"], err.message)
        final = self._maybe_finish_namespace(name)
        return final.obj if final is not None else cur.obj

    def _maybe_finish_namespace(self, ns: str) -> Entry | None:
        """Remove a terminating namespace once nothing is left in it."""
        e = self.store.get("namespaces", "", ns)
        if e is None or not e.obj["metadata"].get("deletionTimestamp"):
            return None
        if any(self.store.count(key, ns) for key in _NAMESPACED_KEYS):
            return None
        final = json.loads(e.raw)
        final["spec"]["finalizers"] = []
        try:
            return self.store.remove("namespaces", "", ns, final=final, resource="namespaces")
        except errors.ApiError:
            return None

    def delete_collection(self, res: Resource, ns: str | None, query: dict, opts: dict) -> list[dict]:
        _, entries = self.list(res, ns, query)
        out = []
        for e in entries:
            try:
                out.append(self.delete(res, e.obj["metadata"].get("namespace", ""), e.obj["metadata"]["name"], opts))
            except errors.ApiError as err:
                if err.code != 404:
                    raise
        return out
