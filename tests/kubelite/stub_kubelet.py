"""A stub HTTPS kubelet serving /containerLogs: a test double of the external peer kubelite proxies to."""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class StubKubelet:
    """HTTPS /containerLogs that requires a client cert of the cluster CA and records the callers."""

    def __init__(self, cp, tmp_path):
        pair = cp.issue_serving_cert(("127.0.0.1",))
        crt, key = tmp_path / "kubelet.crt", tmp_path / "kubelet.key"
        crt.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cp.ca_cert_path)
        self.calls: list[tuple[str, str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                cn = dict(x[0] for x in self.connection.getpeercert()["subject"])["commonName"]
                stub.calls.append((url.path, cn, query))
                parts = url.path.split("/")
                if parts[1] != "containerLogs" or parts[3] == "missing":
                    body = b"pod not found on this node"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                n = 3 if query.get("follow") == "true" else 2
                for i in range(n):
                    data = f"{parts[4]} line {i}\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                    if query.get("follow") == "true":
                        time.sleep(0.3)
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="stub-kubelet", daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
