"""The stand-in kube-apiserver for the end-to-end test, as a process of its own.

It runs inside the test's namespaces and listens where the real one answers through the NLB:
port 6443 of the address the cluster's API name resolves to. It serves with the cluster's own
serving certificate and requires a client certificate from the cluster CA (the handler of
``tests.bootstrap.fakeapi``). Like a fresh control plane, it lists the nodes as NotReady
(no network plugin) until the one-shot bootstrap has been started on controller 0, which it
learns from the controller's ``systemctl`` log; then every node is Ready.

Each request is appended to a JSON-lines log: path, client certificate CN, and whether the
bootstrap had started when it was served. Prints ``listening`` once bound; runs until stdin
closes or SIGTERM.

    python standin.py --cert C --key K --client-ca CA --address A --systemctl-log L --log OUT
        --controllers 1 --workers 1
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from tests.bootstrap.fakeapi import Scenario, _handler, node

API_PORT = 6443
BOOTSTRAP_STARTED = "start bootstrap"


class StandIn(ThreadingHTTPServer):
    """Serves one request at a time, with the scenario brought up to date before each."""

    def __init__(
        self,
        address: str,
        scenario: Scenario,
        systemctl_log: Path,
        log: TextIO,
        nodes: tuple[int, int],
    ) -> None:
        super().__init__((address, API_PORT), _handler(scenario))
        self.scenario = scenario
        self.systemctl_log = systemctl_log
        self.log = log
        self.nodes = nodes
        self.lock = threading.Lock()

    def bootstrap_started(self) -> bool:
        try:
            calls = self.systemctl_log.read_text().splitlines()
        except FileNotFoundError:
            return False
        return BOOTSTRAP_STARTED in calls

    def node_list(self, ready: bool) -> list[dict[str, Any]]:
        controllers, workers = self.nodes
        reason = "" if ready else "KubeletNotReady"
        return [
            *(
                node(f"ip-10-0-0-{10 + i}", controller=True, ready=ready, reason=reason)
                for i in range(controllers)
            ),
            *(
                node(f"ip-10-0-8-{10 + i}", controller=False, ready=ready, reason=reason)
                for i in range(workers)
            ),
        ]

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            started = self.bootstrap_started()
            self.scenario.nodes = self.node_list(ready=started)
            before = len(self.scenario.seen)
            try:
                super().finish_request(request, client_address)
            finally:
                for path, client in self.scenario.seen[before:]:
                    entry = {"path": path, "client": client, "bootstrap_started": started}
                    self.log.write(json.dumps(entry) + "\n")
                self.log.flush()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--client-ca", type=Path, required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--systemctl-log", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--controllers", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=args.client_ca)
    with args.log.open("a") as log:
        server = StandIn(
            args.address,
            Scenario(),
            args.systemctl_log,
            log,
            (args.controllers, args.workers),
        )
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print("listening", flush=True)

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())

        def watch_stdin() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        while not stop.wait(0.5):
            pass
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
