"""The HTTPS edge of kubelite: TLS, authentication, authorization, routing, encoding.

Owns everything HTTP: the threaded TLS server (one named thread per
connection, HTTP/1.1 keep-alive), turning a request into (user, verb,
resource, names), RBAC checks, JSON/Table encoding, chunked streaming of
watches and proxied logs, and the single place where an
:class:`~.errors.ApiError` becomes a ``Status`` response. Semantics live in
:mod:`.api`, :mod:`.subresources` and :mod:`.reviews`.
"""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from . import (csr, discovery, errors, fieldvalidation, logproxy, metricsapi, policy, reviews, selectors,
               streamproxy, subresources, tables)
from .api import Api
from .identity import TokenAuthenticator, User, user_from_peercert
from .resources import Resource, lookup
from .store import Event, encode
from .tokens import TokenInvalid, TokenSigner

log = logging.getLogger(__name__)

_OPEN_PATHS = ("/healthz", "/livez", "/readyz", "/version")
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
}
_TRUE = ("1", "true", "True")


@dataclass
class Route:
    """A parsed resource URL."""

    res: Resource
    namespace: str | None
    name: str | None
    sub: str | None
    legacy_watch: bool


def parse_resource_path(path: str) -> Route | None:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3 or not all(rest):
        return None
    res = lookup(group, version, rest[0])
    if res is None or (ns is not None and not res.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and res.sub(sub) is None:
        return None
    return Route(res, ns, name, sub, legacy_watch)


def request_attributes(verb: str, route: Route, query: dict) -> dict:
    """The authorizer's view of a resource request, as the apiserver's RequestInfo builds it.

    A list or watch with a ``metadata.name=<n>`` field selector is a request for object ``n``
    (so RBAC resourceNames and the Node authorizer can allow it); the selectors go along.
    """
    r = route.res
    attrs = {"verb": verb, "group": r.group, "version": r.version, "resource": r.plural,
             "subresource": route.sub or "", "namespace": route.namespace or "", "name": route.name or ""}
    if verb in ("list", "watch", "deletecollection"):
        raw = query.get("fieldSelector") or ""
        if raw:
            attrs["fieldSelector"] = {"rawSelector": raw}
            if verb != "deletecollection" and not attrs["name"]:
                try:
                    name = selectors.parse_field_selector(raw).requires("metadata.name")
                except selectors.SelectorError:
                    name = None
                if name and "/" not in name and name not in (".", "..") and "%" not in name:
                    attrs["name"] = name
        if query.get("labelSelector"):
            attrs["labelSelector"] = {"rawSelector": query["labelSelector"]}
    return attrs


class KubeliteServer(ThreadingHTTPServer):
    """Threaded TLS server: handshakes happen in the connection's own (named, tracked) thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, ssl_context: ssl.SSLContext, app: "App"):
        self.ssl_context = ssl_context
        self.app = app
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._conns_lock = threading.Lock()
        self._seq = 0
        super().__init__(address, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request(self, request, client_address):
        self._seq += 1
        t = threading.Thread(target=self._serve_one, args=(request, client_address),
                             name=f"kubelite-conn-{self._seq}", daemon=True)
        with self._conns_lock:
            self._conns[t] = request
        t.start()

    def _serve_one(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception as e:  # a broken connection; nothing to answer
            log.debug("connection %s ended: %r", client_address, e)
        finally:
            self.shutdown_request(request)
            with self._conns_lock:
                self._conns.pop(threading.current_thread(), None)

    def handle_error(self, request, client_address):
        log.debug("error on connection %s", client_address, exc_info=True)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut every open connection and join their threads."""
        with self._conns_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t, _ in conns:
            t.join(max(0.0, deadline - time.monotonic()))


class App:
    """What the handlers need: the API, identities, the kubelet-client TLS context, shutdown state."""

    def __init__(self, api: Api, signer: TokenSigner, kubelet_ctx: ssl.SSLContext, *,
                 bookmark_interval: float = 60.0):
        self.api = api
        self.signer = signer
        self.tokens = TokenAuthenticator(signer, api.store)
        self.kubelet_ctx = kubelet_ctx
        self.metrics = metricsapi.MetricsApi(api, kubelet_ctx)
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()
        self._upstreams: set = set()
        self._lock = threading.Lock()

    def track(self, conn) -> None:
        with self._lock:
            self._upstreams.add(conn)

    def untrack(self, conn) -> None:
        with self._lock:
            self._upstreams.discard(conn)

    def close_upstreams(self) -> None:
        with self._lock:
            conns = list(self._upstreams)
        for c in conns:
            try:
                if c.sock is not None:
                    c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _query(raw: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubelite"
    sys_version = ""

    def version_string(self):
        return "kubelite"
    timeout = 300  # idle keep-alive connections
    server: KubeliteServer

    def setup(self):
        self.request.settimeout(30)
        self.request.do_handshake()
        super().setup()
        self.peer_user = user_from_peercert(self.request.getpeercert())

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)

    # -- plumbing ------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="kubernetes-master"')
        for text in self._warnings:
            self.send_header("Warning", fieldvalidation.warning_header(text))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_obj(self, code: int, obj) -> None:
        self._send(code, obj if isinstance(obj, bytes) else encode(obj))

    def _start_chunked(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _client_gone(self) -> bool:
        """On a streaming response the client sends nothing; readable means it closed."""
        try:
            return bool(select.select([self.connection], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = _query(url.query)
        path = url.path.rstrip("/") or "/"
        self._warnings: list[str] = []
        try:
            body = self._read_body()
            user = self._authenticate(path)
            self._route(method, path, query, body, user)
        except errors.ApiError as e:
            self._send_obj(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug: answer 500 and keep serving
            log.exception("kubelite: %s %s failed", method, self.path)
            self._send_obj(500, errors.ApiError(500, "InternalError", f"internal error: {e!r}").status())

    # -- authentication / authorization --------------------------------------
    def _authenticate(self, path: str) -> User | None:
        if self.peer_user is not None:
            return self.peer_user
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            try:
                return self.server.app.tokens.authenticate(auth[7:].strip())[0]
            except TokenInvalid:
                raise errors.unauthorized() from None
        if path in _OPEN_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return None
        raise errors.unauthorized()

    def _authorize(self, user: User | None, attrs: dict) -> None:
        if user is None or user.is_master:
            return
        app = self.server.app
        allowed, reason = policy.authorize(user.name, user.groups, attrs, app.api.view)
        if not allowed:
            ra = attrs.get("resourceAttributes")
            details = None
            if ra is not None:
                details = {"kind": ra.get("resource", "")}
                if ra.get("name"):
                    details["name"] = ra["name"]
                if ra.get("group"):
                    details["group"] = ra["group"]
            raise errors.forbidden(policy.forbidden_message(user.name, attrs, reason), details)

    # -- routing -------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict, body: bytes, user: User | None) -> None:
        metrics = metricsapi.parse_path(path)
        if metrics is not None:
            return self._metrics(method, metrics, query, user)
        route = parse_resource_path(path)
        if route is None:
            if method != "GET":
                raise errors.page_not_found()
            self._authorize(user, {"nonResourceAttributes": {"path": path, "verb": "get"}})
            return self._non_resource(path)
        verb = self._verb(method, route, query)
        r = route.res
        self._authorize(user, {"resourceAttributes": request_attributes(verb, route, query)})
        if verb not in (r.verbs if route.sub is None else r.sub(route.sub).verbs):
            raise errors.method_not_allowed()
        getattr(self, "_do_" + verb)(route, query, body, user)

    def _metrics(self, method: str, target: tuple, query: dict, user: User | None) -> None:
        plural, ns, name = target
        if method != "GET":
            raise errors.method_not_allowed()
        self._authorize(user, {"resourceAttributes": {
            "verb": "get" if name else "list", "group": metricsapi.GROUP, "version": metricsapi.VERSION,
            "resource": plural, "subresource": "", "namespace": ns or "", "name": name or ""}})
        self._send_obj(200, self.server.app.metrics.serve(plural, ns, name, query))

    @staticmethod
    def _verb(method: str, route: Route, query: dict) -> str:
        if method == "GET":
            if route.name is None:
                return "watch" if route.legacy_watch or query.get("watch") in _TRUE else "list"
            return "watch" if route.legacy_watch else "get"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        return "delete" if route.name is not None else "deletecollection"

    def _non_resource(self, path: str) -> None:
        accept = self.headers.get("Accept") or ""
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return self._send_obj(200, discovery.version())
        if path in ("/api", "/apis"):
            if discovery.wants_aggregated(accept):
                doc = discovery.aggregated(path == "/api")
                if path == "/apis":
                    doc["items"].append(metricsapi.aggregated_item())
                return self._send(200, encode(doc), discovery.AGGREGATED_V2)
            if path == "/api":
                return self._send_obj(200, discovery.api_versions(self.headers.get("Host") or "127.0.0.1"))
            doc = discovery.api_group_list()
            doc["groups"].append(metricsapi.group_entry())
            return self._send_obj(200, doc)
        if path == f"/apis/{metricsapi.GROUP}":
            return self._send_obj(200, metricsapi.api_group())
        if path == metricsapi.PREFIX:
            return self._send_obj(200, metricsapi.resource_list())
        if path == "/api/v1":
            return self._send_obj(200, discovery.resource_list("v1"))
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(parts[1])
            if doc is not None:
                return self._send_obj(200, doc)
        if parts[0] == "apis" and len(parts) == 3:
            doc = discovery.resource_list(f"{parts[1]}/{parts[2]}")
            if doc is not None:
                return self._send_obj(200, doc)
        if path == "/openapi/v3":
            return self._send_obj(200, discovery.openapi_v3_index())
        if path.startswith("/openapi/v3/"):
            doc = discovery.openapi_v3_for_path(path[len("/openapi/v3/"):])
            if doc is not None:
                return self._send_obj(200, doc)
        raise errors.page_not_found()

    # -- decoding helpers ----------------------------------------------------
    def _decode(self, body: bytes):
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if not body:
            return {}
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(body)
            if ctype == "application/vnd.kubernetes.protobuf":
                raise errors.unsupported_media(ctype)
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding body: {e}") from None

    def _decode_fields(self, body: bytes) -> fieldvalidation.Body:
        """Like `_decode`, remembering duplicate keys of a JSON body (for fieldValidation)."""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if not body or not ctype.endswith("json"):
            return fieldvalidation.Body(self._decode(body), {})
        try:
            return fieldvalidation.loads(body)
        except ValueError as e:
            raise errors.bad_request(f"error decoding body: {e}") from None

    def _field_warnings(self, found: list[str], user) -> None:
        self._warnings = found
        if found:
            self.server.app.api.note_field_warnings(user, found)

    def _wants_table(self) -> bool:
        return tables.wants_table(self.headers.get("Accept") or "")

    def _delete_options(self, query: dict, body: bytes) -> dict:
        opts = self._decode(body) if body else {}
        if not isinstance(opts, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        if "gracePeriodSeconds" in query:
            try:
                opts["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        if "propagationPolicy" in query:
            opts["propagationPolicy"] = query["propagationPolicy"]
        return opts

    @staticmethod
    def _dry_run(query: dict) -> bool:
        return query.get("dryRun") == "All"

    def _send_entry(self, res: Resource, entry, code: int = 200) -> None:
        obj = entry if isinstance(entry, dict) else entry.obj
        if self._wants_table():
            return self._send_obj(code, tables.table(res.key, [obj], include=self._include(),
                                                     resource_version=obj["metadata"].get("resourceVersion", "")))
        self._send_obj(code, entry if isinstance(entry, dict) else entry.raw)

    def _include(self) -> str:
        return _query(urlsplit(self.path).query).get("includeObject") or "Metadata"

    # -- verbs ---------------------------------------------------------------
    def _do_get(self, route: Route, query: dict, body: bytes, user) -> None:
        api = self.server.app.api
        r = route.res
        ns = route.namespace or ""
        if route.sub == "log":
            return self._logs(route, query)
        if route.sub in ("exec", "attach", "portforward"):
            return self._exec(route)
        entry = api.get(r, ns, route.name)
        if route.sub == "scale":
            return self._send_obj(200, subresources.scale_of(r, entry.obj))
        self._send_entry(r, entry)

    def _do_list(self, route: Route, query: dict, body: bytes, user) -> None:
        api = self.server.app.api
        r = route.res
        rv, entries, token, remaining = api.list_page(r, route.namespace, query)
        if self._wants_table():
            return self._send_obj(200, tables.table(r.key, [e.obj for e in entries], include=self._include(),
                                                    resource_version=str(rv), continue_token=token))
        meta = {"resourceVersion": str(rv)}
        if token:
            meta.update({"continue": token, "remainingItemCount": remaining})
        head = (b'{"kind":"' + r.list_kind.encode() + b'","apiVersion":"' + r.api_version.encode()
                + b'","metadata":' + encode(meta) + b',"items":[')
        self._send(200, head + b",".join(e.raw for e in entries) + b"]}")

    def _do_create(self, route: Route, query: dict, body: bytes, user) -> None:
        app = self.server.app
        api = app.api
        r, ns, name = route.res, route.namespace or "", route.name
        if route.sub in ("exec", "attach", "portforward"):
            return self._exec(route)
        parsed = self._decode_fields(body)
        obj = parsed.value
        if route.sub == "binding":
            return self._send_obj(*subresources.bind(api, ns, name, obj))
        if route.sub == "eviction":
            return self._send_obj(*subresources.evict(api, ns, name, obj, user))
        if route.sub == "token":
            return self._send_obj(*subresources.token_request(api, app.signer, ns, name, obj, user))
        if name is not None:
            raise errors.method_not_allowed()
        if r.plural == "tokenreviews":
            return self._send_obj(*reviews.token_review(app.tokens, obj))
        if r.plural == "selfsubjectreviews":
            me = user or User("system:anonymous", ("system:unauthenticated",))
            return self._send_obj(201, {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                                        "metadata": {"creationTimestamp": None}, "status": {"userInfo": me.info()}})
        if r.plural == "subjectaccessreviews":
            return self._send_obj(*reviews.subject_access_review(api.view, obj))
        if r.plural == "localsubjectaccessreviews":
            return self._send_obj(*reviews.subject_access_review(api.view, obj, "LocalSubjectAccessReview", ns))
        if r.plural == "selfsubjectaccessreviews":
            return self._send_obj(*reviews.self_subject_access_review(api.view, user or User("system:anonymous", ()),
                                                                      obj))
        if r.namespaced and route.namespace is None:
            raise errors.method_not_allowed()
        mode = fieldvalidation.directive(query, "create")
        self._field_warnings(fieldvalidation.check_body(r.kind, r.api_version, parsed, mode), user)
        if r.key == "certificatesigningrequests" and isinstance(obj, dict):
            csr.stamp_requestor(obj, user)
        created = api.create(r, ns, obj, dry_run=self._dry_run(query), user=user)
        self._send_entry(r, created, 201)

    def _do_update(self, route: Route, query: dict, body: bytes, user) -> None:
        api = self.server.app.api
        r, ns = route.res, route.namespace or ""
        parsed = self._decode_fields(body)
        obj = parsed.value
        if route.sub in (None, "status", "approval"):
            mode = fieldvalidation.directive(query, "update")
            self._field_warnings(fieldvalidation.check_body(r.kind, r.api_version, parsed, mode), user)
        if route.sub == "scale":
            rv = (obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj, dict) else None
            scale = subresources.update_scale(api, r, ns, route.name, lambda s: obj,
                                              user_rv=int(rv) if rv else None)
            return self._send_obj(200, scale)
        sub = "status" if route.sub in ("status", "finalize") else route.sub if route.sub == "approval" else None
        if route.sub == "finalize":
            def finalize(cur):
                cur.setdefault("spec", {})["finalizers"] = ((obj.get("spec") or {}).get("finalizers") or [])
                return cur
            return self._send_entry(r, api.write(r, ns, route.name, "finalize", finalize))
        self._send_entry(r, api.update(r, ns, route.name, sub, obj, dry_run=self._dry_run(query), user=user))

    def _do_patch(self, route: Route, query: dict, body: bytes, user) -> None:
        api = self.server.app.api
        r, ns = route.res, route.namespace or ""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        kind_of_patch = _PATCH_TYPES.get(ctype)
        if kind_of_patch is None:
            raise errors.unsupported_media(ctype)
        parsed = self._decode_fields(body)
        patch = parsed.value
        if route.sub == "scale":
            return self._send_obj(200, subresources.patch_scale(api, r, ns, route.name, kind_of_patch, patch))
        checked = None
        if route.sub in (None, "status"):
            mode = fieldvalidation.directive(query, "patch")
            checked = fieldvalidation.PatchCheck(r.kind, r.api_version, parsed, mode, kind_of_patch)
        code, result = api.patch(r, ns, route.name, route.sub, kind_of_patch, patch, dry_run=self._dry_run(query),
                                 user=user, check=checked.check if checked else None)
        self._field_warnings(checked.found if checked else [], user)
        self._send_entry(r, result, code)

    def _do_delete(self, route: Route, query: dict, body: bytes, user) -> None:
        api = self.server.app.api
        r = route.res
        opts = self._delete_options(query, body)
        self._send_entry(r, api.delete(r, route.namespace or "", route.name, opts, dry_run=self._dry_run(query),
                                                   user=user))

    def _do_deletecollection(self, route: Route, query: dict, body: bytes, user) -> None:
        api = self.server.app.api
        r = route.res
        items = api.delete_collection(r, route.namespace, query, self._delete_options(query, body))
        self._send_obj(200, {"kind": r.list_kind, "apiVersion": r.api_version,
                             "metadata": {"resourceVersion": str(api.store.resource_version)}, "items": items})

    # -- watch ---------------------------------------------------------------
    def _do_watch(self, route: Route, query: dict, body: bytes, user) -> None:
        app = self.server.app
        r = route.res
        rv_text = query.get("resourceVersion") or ""
        try:
            since = None if rv_text in ("", "0") else int(rv_text)
        except ValueError:
            raise errors.bad_request(f"invalid resource version: {rv_text!r}") from None
        match = app.api.matcher(r, query)
        if route.name is not None:  # legacy /watch/.../name: a field selector on the name
            name, inner = route.name, match
            match = lambda o: o["metadata"]["name"] == name and (inner is None or inner(o))  # noqa: E731
        table = self._wants_table()
        try:
            timeout = float(query.get("timeoutSeconds") or 1800)
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be a number") from None
        bookmarks = query.get("allowWatchBookmarks") in _TRUE
        try:
            watcher, initial = app.api.store.watch(r.key, route.namespace, since)
        except errors.ApiError as e:
            if e.code != 410:
                raise
            self._start_chunked("application/json")
            self._chunk(b'{"type":"ERROR","object":' + encode(e.status()) + b"}\n")
            self._end_chunks()
            return
        state = {"columns": True}

        def render(ev: Event) -> bytes:
            etype, obj, raw, line = ev.type, ev.obj, ev.raw, ev.line
            if match is not None:
                now_in = match(obj)
                was_in = ev.old is not None and match(ev.old)
                if etype == "MODIFIED":
                    if now_in and not was_in:
                        etype = "ADDED"
                    elif was_in and not now_in:
                        etype = "DELETED"
                    elif not now_in:
                        return b""
                elif not now_in:
                    return b""
                if etype != ev.type:
                    line = b'{"type":"' + etype.encode() + b'","object":' + raw + b"}\n"
            if table:
                t = tables.table(r.key, [obj], include=self._include(), resource_version=str(ev.rv),
                                 with_columns=state["columns"])
                state["columns"] = False
                return b'{"type":"' + etype.encode() + b'","object":' + encode(t) + b"}\n"
            return line

        self._start_chunked("application/json")
        try:
            self._chunk(b"".join(render(ev) for ev in initial))
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    ev = watcher.next(min(remaining, 5.0, app.bookmark_interval))
                except EOFError:
                    break
                if ev is None:
                    if self._client_gone():
                        self.close_connection = True
                        return
                    if bookmarks and time.monotonic() - last_bookmark >= app.bookmark_interval:
                        rv = watcher.idle_rv()
                        if rv is not None:
                            mark = {"kind": r.kind, "apiVersion": r.api_version,
                                    "metadata": {"resourceVersion": str(rv)}}
                            self._chunk(b'{"type":"BOOKMARK","object":' + encode(mark) + b"}\n")
                            last_bookmark = time.monotonic()
                    continue
                batch = [render(ev)]
                for _ in range(256):  # send what is already queued in one write
                    try:
                        more = watcher.next(0)
                    except EOFError:
                        break
                    if more is None:
                        break
                    batch.append(render(more))
                self._chunk(b"".join(batch))
            self._end_chunks()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            watcher.close()

    def _exec(self, route: Route) -> None:
        api = self.server.app.api
        pod = api.get(route.res, route.namespace or "", route.name).obj
        node = api.store.get("nodes", "", (pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            raise errors.bad_request(f"pod {route.name} does not have a host assigned")
        path = streamproxy.kubelet_path(route.sub, pod, urlsplit(self.path).query)
        streamproxy.splice(self, path, node.obj, self.server.app.kubelet_ctx)

    # -- pods/log --------------------------------------------------------------
    def _logs(self, route: Route, query: dict) -> None:
        app = self.server.app
        api = app.api
        pod = api.get(route.res, route.namespace or "", route.name).obj
        container = logproxy.pick_container(pod, query.get("container"))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {route.name} does not have a host assigned")
        node = api.store.get("nodes", "", node_name)
        if node is None:
            raise errors.not_found("nodes", node_name)
        conn, resp = logproxy.open_logs(pod, node.obj, container, query, app.kubelet_ctx)
        app.track(conn)
        try:
            self._start_chunked(resp.getheader("Content-Type") or "text/plain")
            while not app.stopping.is_set():
                try:
                    data = resp.read1(65536)
                except (OSError, http.client.HTTPException):
                    break
                if not data:
                    break
                self._chunk(data)
            self._end_chunks()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            app.untrack(conn)
            conn.close()
