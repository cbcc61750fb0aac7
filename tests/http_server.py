"""An in-process HTTP server on 127.0.0.1 for the remote-reference tests.

Serves a folder with byte ranges (GDAL's /vsicurl/ reads COGs by range), and can
answer chosen paths with an error status, count requests, or stall: accept the
connection and never answer.
"""

import contextlib
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Behaviour:
    """What the server does beyond serving files; tests change it while it runs."""

    status_for: dict[str, int] = field(default_factory=dict)
    """URL path -> HTTP status to answer instead of the file."""
    failures_left: dict[str, int] = field(default_factory=dict)
    """URL path -> how many more requests get a 503 before the file is served."""
    requests: Counter = field(default_factory=Counter)
    byte_ranges: bool = True
    """False: Range headers are ignored and every answer is the whole file, as some
    servers do."""


def _handler(root: Path, behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet test output
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            behaviour.requests[path] += 1
            status = behaviour.status_for.get(path)
            if behaviour.failures_left.get(path, 0) > 0:
                behaviour.failures_left[path] -= 1
                status = 503
            file = root / path.lstrip("/")
            if status is None and not file.is_file():
                status = 404
            if status is not None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match and behaviour.byte_ranges:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                data = data[start : end + 1]
            else:
                self.send_response(200)
            if behaviour.byte_ranges:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # unless the client had enough

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, Behaviour]]:
    """(base URL, behaviour) of a server for `root`, stopped when the block ends."""
    behaviour = Behaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def stalling_server() -> Iterator[str]:
    """A base URL whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def closed_port_url() -> str:
    """A base URL on which nothing listens (connection refused)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@contextmanager
def misbehaving_server(kind: str, seconds: float = 10.0) -> Iterator[str]:
    """A URL whose server answers 200 and then misbehaves, for at most `seconds`:
    `trickle` sends a byte every 0.3 s, `endless` sends data without end, `short`
    promises more bytes than it sends and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(seconds)
    stop = threading.Event()

    def answer() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            length = b"" if kind == "endless" else b"Content-Length: 100000\r\n"
            connection.sendall(b"HTTP/1.1 200 OK\r\n" + length + b"\r\n")
            deadline = threading.Event()
            timer = threading.Timer(seconds, deadline.set)
            timer.start()
            try:
                if kind == "short":
                    connection.sendall(b'{"type": "Feature"')
                    return
                while not (stop.is_set() or deadline.is_set()):
                    if kind == "trickle":
                        connection.sendall(b" ")
                        stop.wait(0.3)
                    else:
                        connection.sendall(b" " * 65536)
            except OSError:
                return
            finally:
                timer.cancel()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/item.json"
    finally:
        stop.set()
        listener.close()
        thread.join(seconds)
