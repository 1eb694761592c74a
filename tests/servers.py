"""Real servers for tests: an S3-compatible HTTP server (moto's standalone server, the one
s3fs's own test suite uses) run as a separate process on 127.0.0.1, and a proxy in front of
it that injects the faults of a real store (throttling, dropped connections, access denied)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

# Distinctive, so a test can prove it never appears in logs or outputs.
SECRET_ACCESS_KEY = "gb-test-SECRET-must-never-be-logged-7f3a9c"
ACCESS_KEY_ID = "GBTESTACCESSKEY0001"


# Ports a Ray node takes by default unless told otherwise (GCS, dashboard, client server, the
# dashboard agent's HTTP port). 52365 lies inside Linux's ephemeral range, so an OS-chosen port can
# be it: CI once gave it to `ray start --port`, which then refused to start.
RAY_DEFAULT_PORTS = frozenset({6379, 8265, 10001, 52365})


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1, none of them a Ray default. All sockets are held
    open until every port is chosen, so the OS cannot hand out the same port twice."""
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in RAY_DEFAULT_PORTS:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def processes() -> dict[int, tuple[int, bytes]]:
    """Every process on the machine: pid -> (parent pid, command line with its arguments joined
    by spaces; empty for a zombie)."""
    out: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                out[int(entry)] = (parent, cmdline.read().replace(b"\0", b" "))
        except (OSError, ValueError, IndexError):
            continue
    return out


def stop_ray_under(temp_dir: str, *also: str, timeout_s: float = 30.0) -> None:
    """Stop the Ray whose processes name this temp dir (or any of ``also``, e.g. its GCS address)
    on their command line, with their children (Ray's agents), and no other Ray: `ray stop` would
    stop every Ray on the machine, other test modules' included."""
    import signal

    marks = [mark.encode() for mark in (temp_dir, *also)]
    everyone = processes()
    doomed = {pid for pid, (_, cmdline) in everyone.items()
              if pid != os.getpid() and any(mark in cmdline for mark in marks)}
    while True:  # and their descendants
        more = {pid for pid, (parent, _) in everyone.items() if parent in doomed} - doomed
        if not more:
            break
        doomed |= more
    for pid in doomed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in doomed):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie is gone, only unreaped
    except OSError:
        return False


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def reset(self) -> None:
        """Forget every bucket (moto's reset endpoint), as s3fs's tests do between tests."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_s3_server(log_path: str) -> S3Server:
    port = free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return S3Server(endpoint, process)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"moto server did not answer on {endpoint} within 30 s; see {log_path}")


class FaultyS3Proxy:
    """An HTTP proxy on 127.0.0.1 in front of the S3 server that misbehaves the way a real
    store does: some requests get S3's own throttling answer (503 SlowDown) or a dropped
    connection, and buckets can be denied (403 AccessDenied, as under a restrictive policy).

    Everything else is forwarded untouched, so clients talk to the real server through it.
    """

    def __init__(self, upstream: str, slow_down_every: int = 0, drop_every: int = 0) -> None:
        import http.server
        import threading

        self.upstream = urllib.parse.urlsplit(upstream)
        self.slow_down_every, self.drop_every = slow_down_every, drop_every
        self.denied_buckets: set[str] = set()
        # (method, path part): once a request like it has been forwarded, the store is down and
        # every later request is dropped, as when the server dies mid-run.
        self.down_after: tuple[str, str] | None = None
        self.down = False
        self.requests = self.slowed = self.dropped = self.denied = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                body = self._read_body()
                fault = proxy._fault_for(self.path, self.command)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in ("slow", "deny"):
                    code, name, text = ((503, "SlowDown", "Please reduce your request rate.") if fault == "slow"
                                        else (403, "AccessDenied", "Access Denied"))
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{name}</Code>'
                               f"<Message>{text}</Message></Error>").encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                self._forward(body)

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        chunk = self.rfile.read(size + 2)[:size]  # data + CRLF
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            break
                        chunks.append(chunk)
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self, body: bytes) -> None:
                import http.client

                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                # A HEAD answer has no body but the object's Content-Length: keep the server's.
                dropped = ("transfer-encoding", "connection") + (() if self.command == "HEAD" else ("content-length",))
                for key, value in response.getheaders():
                    if key.lower() not in dropped:
                        self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _fault_for(self, path: str, method: str = "GET") -> str | None:
        bucket = urllib.parse.urlsplit(path).path.lstrip("/").split("/", 1)[0]
        with self._lock:
            self.requests += 1
            if self.down:
                self.dropped += 1
                return "drop"
            if self.down_after and method == self.down_after[0] and self.down_after[1] in path:
                self.down = True  # this one goes through; nothing after it does
            if bucket in self.denied_buckets:
                self.denied += 1
                return "deny"
            if self.drop_every and self.requests % self.drop_every == 0:
                self.dropped += 1
                return "drop"
            if self.slow_down_every and self.requests % self.slow_down_every == 0:
                self.slowed += 1
                return "slow"
        return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
