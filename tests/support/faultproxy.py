"""A small fault-injecting HTTP proxy to put in front of a real S3 server.

Each request is either forwarded unchanged to the upstream server or answered by
a fault rule instead, so the server itself never sees a request that "failed".
Rules are plain callables; the ones here model what S3 does under load:

- `slow_down(fraction)`: answer 503 SlowDown (the S3 throttling error) to that
  fraction of requests;
- `per_key_slow_down(fraction)`: answer that fraction of DeleteObjects requests
  with 200 and a SlowDown `<Error>` for every key, without forwarding: S3's
  per-key throttling, where nothing was deleted;
- `deny_listing()`: 403 AccessDenied to every ListObjectsV2;
- `require_content_md5()`: refuse DeleteObjects without a valid Content-MD5
  (Ceph RGW, older MinIO);
- `delay_deletes(seconds)`: hold each DeleteObjects request before forwarding it;
- `slow_down_deletes(seen)`: 503 SlowDown to every DeleteObjects (a store that
  throttles every delete), telling the test once one has been retried;
- `hold_deletes(release, seen)`: answer no DeleteObjects until released (a peer
  that stops answering), then 503 without forwarding, so nothing is deleted;
- `inject_listing_key(key)`: add a foreign key to every ListObjectsV2 answer
  (a store that ignores `Prefix`).

Plain context manager (`fault_proxy(upstream, rule)`), no pytest dependency;
listens on 127.0.0.1 only and stops on exit.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


# A rule sees the request (and, after forwarding, may rewrite the response).
Before = Callable[[Request], Response | None]
After = Callable[[Request, Response], Response]


@dataclass
class Stats:
    forwarded: int = 0
    faults: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, faulted: bool) -> None:
        with self.lock:
            if faulted:
                self.faults += 1
            else:
                self.forwarded += 1


def _is_delete_objects(request: Request) -> bool:
    query = urlsplit(request.path).query
    return request.method == "POST" and "delete" in query.split("&")


def _is_list_v2(request: Request) -> bool:
    return request.method == "GET" and "list-type=2" in urlsplit(request.path).query


def _error(status: int, code: str, message: str) -> Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()
    return Response(status, {"Content-Type": "application/xml"}, body)


def slow_down(
    fraction: float,
    seed: int = 1,
    retry_after_ms: int | None = None,
    seen: threading.Event | None = None,
) -> Before:
    """503 SlowDown for `fraction` of all requests (listing and deleting alike).

    `retry_after_ms` adds an `x-amz-retry-after` header, which botocore's standard
    retries honour (up to 5 s more than their own back-off): a client then surely waits
    between attempts. `seen` is set at the first throttled answer.
    """
    rng = random.Random(seed)
    lock = threading.Lock()

    def rule(request: Request) -> Response | None:
        with lock:
            hit = rng.random() < fraction
        if not hit:
            return None
        response = _error(503, "SlowDown", "Please reduce your request rate.")
        if retry_after_ms is not None:
            response.headers["x-amz-retry-after"] = str(retry_after_ms)
        if seen is not None:
            seen.set()
        return response

    return rule


def per_key_slow_down(fraction: float, seed: int = 2, first: int = 0) -> Before:
    """For `fraction` of DeleteObjects calls, and for the `first` ones in any case: every
    key reported as SlowDown, nothing deleted."""
    rng = random.Random(seed)
    lock = threading.Lock()
    calls = [0]

    def rule(request: Request) -> Response | None:
        if not _is_delete_objects(request):
            return None
        with lock:
            calls[0] += 1
            hit = calls[0] <= first or rng.random() < fraction
        if not hit:
            return None
        keys = re.findall(rb"<Key>(.*?)</Key>", request.body)
        errors = b"".join(
            b"<Error><Key>%s</Key><Code>SlowDown</Code><Message>Please reduce your request rate."
            b"</Message></Error>" % key
            for key in keys
        )
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            + errors
            + b"</DeleteResult>"
        )
        return Response(200, {"Content-Type": "application/xml"}, body)

    return rule


def deny_listing() -> Before:
    """403 AccessDenied for every ListObjectsV2, as S3 answers without s3:ListBucket."""

    def rule(request: Request) -> Response | None:
        if _is_list_v2(request):
            return _error(403, "AccessDenied", "Access Denied")
        return None

    return rule


def require_content_md5() -> Before:
    """Refuse DeleteObjects without a valid Content-MD5, as Ceph RGW and older MinIO do."""

    def rule(request: Request) -> Response | None:
        if not _is_delete_objects(request):
            return None
        given = {k.lower(): v for k, v in request.headers.items()}.get("content-md5")
        expected = base64.b64encode(hashlib.md5(request.body).digest()).decode()
        if given == expected:
            return None
        return _error(400, "InvalidRequest", "DeleteObjects requires one valid Content-MD5 header")

    return rule


def delay_deletes(seconds: float) -> Before:
    """Hold each DeleteObjects request for `seconds` before forwarding it (a slow store)."""

    def rule(request: Request) -> Response | None:
        if _is_delete_objects(request):
            time.sleep(seconds)
        return None

    return rule


def slow_down_deletes(retried: threading.Event | None = None) -> Before:
    """503 SlowDown for every DeleteObjects; `retried` is set at the second one (with a
    single batch in flight, its first retry)."""
    answered = 0
    lock = threading.Lock()

    def rule(request: Request) -> Response | None:
        nonlocal answered
        if not _is_delete_objects(request):
            return None
        with lock:
            answered += 1
            if answered >= 2 and retried is not None:
                retried.set()
        return _error(503, "SlowDown", "Please reduce your request rate.")

    return rule


def hold_deletes(release: threading.Event, seen: threading.Event | None = None) -> Before:
    """Leave every DeleteObjects unanswered until `release` is set (`seen` is set when the
    first arrives), then answer 503: the upstream server never sees one."""

    def rule(request: Request) -> Response | None:
        if not _is_delete_objects(request):
            return None
        if seen is not None:
            seen.set()
        release.wait()
        return _error(503, "ServiceUnavailable", "Released by the test.")

    return rule


def inject_listing_key(key: str) -> After:
    """Every ListObjectsV2 answer also lists `key`, as a store ignoring `Prefix` would."""
    entry = (
        f"<Contents><Key>{key}</Key><LastModified>2000-01-01T00:00:00.000Z</LastModified>"
        f'<ETag>"0"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>'
    ).encode()

    def rule(request: Request, response: Response) -> Response:
        if not _is_list_v2(request) or response.status != 200:
            return response
        body = response.body.replace(b"</Name>", b"</Name>" + entry, 1)
        return Response(response.status, response.headers, body)

    return rule


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        response = None
        for rule in self.server.before:
            response = rule(request)
            if response is not None:
                break
        self.server.stats.count(response is not None)
        if response is None:
            response = self._forward(request)
            for after in self.server.after:
                response = after(request, response)
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _forward(self, request: Request) -> Response:
        host, port = self.server.upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
            conn.request(request.method, request.path, body=request.body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            return Response(answer.status, dict(answer.getheaders()), data)
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], before: list[Before], after: list[After]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.before = before
        self.after = after
        self.stats = Stats()


@dataclass(frozen=True)
class Proxy:
    url: str
    stats: Stats


@contextmanager
def fault_proxy(
    upstream_url: str, before: list[Before] | None = None, after: list[After] | None = None
) -> Iterator[Proxy]:
    parts = urlsplit(upstream_url)
    server = _Server((parts.hostname or "127.0.0.1", parts.port or 80), before or [], after or [])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Proxy(f"http://127.0.0.1:{server.server_address[1]}", server.stats)
    finally:
        server.shutdown()
        server.server_close()
