"""A stand-in kube-apiserver on loopback: the cluster's own serving certificate, client
certificates required and checked against the cluster CA, and ``/readyz`` and
``/api/v1/nodes`` answers that a test changes as it goes."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Scenario:
    readyz: tuple[int, str] = (200, "ok")
    nodes: list[dict[str, Any]] = field(default_factory=list)
    # (path, client certificate CN) of every request served.
    seen: list[tuple[str, str]] = field(default_factory=list)


def node(name: str, *, controller: bool, ready: bool | None, reason: str = "") -> dict[str, Any]:
    labels = (
        {"node.kubernetes.io/controller": "true"} if controller else {"node.kubernetes.io/node": ""}
    )
    conditions = []
    if ready is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": reason or "KubeletReady",
            }
        )
    return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": conditions}}


def _handler(scenario: Scenario) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cert = self.connection.getpeercert()  # type: ignore[attr-defined]
            cn = next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")
            scenario.seen.append((self.path, cn))
            if self.path.startswith("/readyz"):
                status, text = scenario.readyz
                self._send(status, text.encode(), "text/plain")
            elif self.path == "/api/v1/nodes":
                body = {
                    "kind": "NodeList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": scenario.nodes,
                }
                self._send(200, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b"{}", "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(cert: Path, key: Path, client_ca_pem: str) -> Iterator[tuple[int, Scenario]]:
    """Serve on an ephemeral loopback port; yields the port and the scenario to steer."""
    scenario = Scenario()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=client_ca_pem)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(scenario))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], scenario
    finally:
        server.shutdown()
        server.server_close()
