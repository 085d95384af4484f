"""A local stand-in for a stage's public entry (load balancer or App Runner front end plus the
web ACL), for tests that reach the real container the way users, cron and the site checks do.

It listens on 127.0.0.1 (plain HTTP, or HTTPS with a certificate of the tests' own CA), judges
every request with the program's own WAF rules (components.firewall.web_acl_rules, evaluated by
tests/waf_eval.py) as if it came from `client_ip` in `client_country`, answers a blocked request
with WAF's 403 and forwards an allowed one to the container with X-Forwarded-For/Proto, like the
load balancer does. `requests` records what
reached it; `upstream_down()` makes it answer 502 as a load balancer with no healthy target does.
"""
from __future__ import annotations

import http.client
import http.server
import socketserver
import ssl
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from services import free_port
from waf_eval import Request, evaluate


@dataclass
class EntryStandIn:
    upstream_port: int
    rules: list[dict[str, Any]]
    ip_sets: dict[str, list[str]] = field(default_factory=dict)
    client_ip: str = "198.51.100.23"
    client_country: str = "DE"
    tls: Optional[tuple[Path, Path]] = None  # (certificate chain, key)
    port: int = 0
    requests: list[tuple[str, str, bool, Optional[str]]] = field(default_factory=list)
    _down: bool = False
    _server: Any = None

    def start(self) -> "EntryStandIn":
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # no request lines on stderr (they carry paths only)
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def _serve(self, method: str) -> None:
                parts = urllib.parse.urlsplit(self.path)
                decision = evaluate(standin.rules, Request(
                    path=parts.path, ip=standin.client_ip, country=standin.client_country,
                    query=dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()}, method=method), standin.ip_sets)
                standin.requests.append((method, parts.path, decision.action == "ALLOW", decision.rule))
                if decision.action != "ALLOW":
                    return self._reply(decision.status, b"<div> Access denied </div>")
                if standin._down:
                    return self._reply(502, b"502 Bad Gateway")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                forward = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                forward.update({"X-Forwarded-For": standin.client_ip,
                                "X-Forwarded-Proto": "https" if standin.tls else "http"})
                upstream = http.client.HTTPConnection("127.0.0.1", standin.upstream_port, timeout=30)
                try:
                    upstream.request(method, self.path, body=body, headers=forward)
                    response = upstream.getresponse()
                    self._reply(response.status, response.read())
                except OSError:
                    self._reply(502, b"502 Bad Gateway")
                finally:
                    upstream.close()

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "text/html" if status == 403 else "text/plain")
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.port = self.port or free_port()
        self._server = Server(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def upstream_down(self, down: bool = True) -> None:
        self._down = down

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def make_test_ca_and_certificate(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for `host`, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.pem"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(ca_key), "-out", str(ca_crt), "-days", "2", "-subj", "/CN=redcap tests CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-subj", f"/CN={host}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return ca_crt, crt, key
