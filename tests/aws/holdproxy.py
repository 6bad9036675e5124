"""A loopback proxy in front of the emulated AWS that can swallow one response or refuse an
operation, to test what squall does when AWS misbehaves at a chosen moment."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that were killed mid-request reset their connections; that is the point.
        pass


def action_of(body: bytes) -> str:
    return urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0]


class HoldProxy:
    """``hold``: the first request of that action reaches AWS, but its response never comes
    back (as if the connection died after AWS acted). ``deny``: that action is answered with
    EC2's UnauthorizedOperation."""

    def __init__(self, upstream: str, *, hold: str | None = None, deny: str | None = None) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.hold = hold
        self.deny = deny
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.actions: list[str] = []
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HoldProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=60
        )
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = action_of(body)
                with proxy._lock:
                    proxy.actions.append(action)
                    holding = bool(action) and action == proxy.hold and not proxy.held.is_set()
                    if holding:
                        proxy.held.set()
                if action and action == proxy.deny:
                    payload = (
                        "<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error>"
                        "<Code>UnauthorizedOperation</Code><Message>You are not authorized to "
                        f"perform this operation ({action}).</Message></Error></Errors>"
                        "<RequestID>deny</RequestID></Response>"
                    ).encode()
                    self.send_response(403)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                status, resp_headers, payload = proxy._forward(
                    self.command, self.path, headers, body
                )
                if holding:
                    # AWS acted; the caller never hears of it.
                    proxy._release.wait()
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in resp_headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        return Handler
