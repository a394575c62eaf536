"""A webhook receiver for Alertmanager's notifications, served on loopback by a test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class AlertWebhook:
    """Collects every notification POSTed to it (Alertmanager's webhook JSON, version 4)."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with received._lock:
                    received.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AlertWebhook:
        self._thread.start()
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def mark(self) -> int:
        """A position in the notifications: `seen(..., since=mark)` looks only after it."""
        with self._lock:
            return len(self.notifications)

    def seen(self, alertname: str, status: str, since: int = 0) -> bool:
        """Whether a notification after `since` carried `alertname` in `status` (firing, resolved)."""
        with self._lock:
            recent = self.notifications[since:]
        return any(
            a["labels"].get("alertname") == alertname and a["status"] == status
            for n in recent
            for a in n["alerts"]
        )

    def last_status(self, alertname: str) -> str | None:
        """`alertname`'s status in the newest notification that carried it (None: never sent)."""
        with self._lock:
            sent = list(self.notifications)
        for n in reversed(sent):
            for a in n["alerts"]:
                if a["labels"].get("alertname") == alertname:
                    return str(a["status"])
        return None
