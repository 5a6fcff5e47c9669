"""An S3 stand-in for benchmarks: real-S3 latency, unlimited concurrency, optional throttling.

moto's server is single-threaded and spends milliseconds of CPU per request, so a
benchmark against it measures moto. Real S3 answers each request after tens of
milliseconds and serves any number at once. This server does the same: every S3
request waits out its bucket's list or delete latency in `asyncio.sleep`, so a
waiting request holds up nobody, and the work per request is small (listing XML is
joined from two precomputed templates, DeleteObjects bodies are cut with a regex).

Run it on its own:

    .venv/bin/python bench/s3standin.py --port 9000

or from Python (`with StandIn() as s3: s3.seed(...)`); bench/s3_bench.py does the latter.

S3 REST API spoken (path-style addressing, any credentials, no signature check):
- ListObjectsV2: prefix, delimiter (CommonPrefixes), max-keys (at most 1000),
  continuation-token, start-after, encoding-type=url, fetch-owner (ignored).
- ListObjectVersions: the same, with key-marker; every object is one version "null".
- DeleteObjects: Quiet and not, per-key Errors; DeleteObject.
- HeadBucket, GetBucketLocation, ListBuckets. Anything else is answered 501
  NotImplemented and counted in the bucket's `unsupported` stat.

Each listed object carries what S3 lists for an object uploaded since 2025: Key,
LastModified, ETag, ChecksumAlgorithm, ChecksumType, Size, StorageClass (seed with
"checksums": false to leave out the two checksum elements, as older objects list).

Control API (JSON, under /_standin/, never delayed):
- POST /_standin/seed    {"bucket", "old", "fresh", "subprefixes", "top_level", "prefix",
                          "list_ms", "delete_ms", "throttle_rate", "throttle_mode",
                          "throttle_burst", "size", "checksums"}: (re)creates the bucket
                          with generated keys
- POST /_standin/configure {"bucket", and any of "list_ms", "delete_ms", "throttle_rate",
                          "throttle_mode", "throttle_burst"}: changes them mid-run
- GET  /_standin/check?bucket=B: which keys remain (old ones under the prefix must be gone,
                          every other key kept) and the bucket's request stats
- POST /_standin/drop?bucket=B, POST /_standin/reset: free buckets

Key layout of a seeded bucket (numbers zero-padded so that text order is number order):
- `old` keys under the prefix with LastModified in 2020: the ones a sweep must delete.
  Flat: `output/0000042`; with `subprefixes` P: `output/job-007/0000042`, spread evenly,
  plus `top_level` of them directly under the prefix.
- `fresh` keys under the prefix, named like an old key plus `.new` and interleaved with
  them, with LastModified = seeding time: they must survive.
- sentinels outside the prefix, all old: `output`, `output-archive/0..4`, `outputs/0..4`,
  `keep/0..4`: a sweep that mistakes the prefix for a string prefix deletes them.

Throttling (per bucket): a token bucket of `throttle_rate` keys/s holding at most
`throttle_burst` (default one second's worth). `throttle_mode = "keys"`: a
DeleteObjects answer deletes as many keys as there are tokens and reports the rest
as per-key `SlowDown` errors, as S3 does. `"503"`: a DeleteObjects (or DeleteObject)
request arriving while the bucket is in debt is answered `503 SlowDown` as a whole;
one arriving with tokens left is served in full and may take the bucket into debt,
so the mean rate is the same in both modes. Tokens are taken when the answer is
made, after the latency. To throttle every delete (a store that never recovers), use
a tiny rate with no burst: {"throttle_rate": 1e-9, "throttle_burst": 0}; to lift a
throttle mid-run, configure {"throttle_rate": 0}.

Memory: a bucket holds one sorted list of key strings and two bytearrays (alive,
fresh): about 80 bytes a key; the server's RSS is about 120 MB with 1,000,000 keys,
which seed in about half a second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
OLD_STAMP = "2020-01-01T00:00:00.000Z"
ETAG = "&quot;0f343b0931126a20f133d67c2b018a3b&quot;"  # md5 of 1 KiB of zeros
# S3 lists an object uploaded with a checksum (the default since 2025) with these two.
CHECKSUM = (
    "<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
)
MAX_KEYS = 1000
SENTINELS = (
    ["output"]
    + [f"output-archive/{i}" for i in range(5)]
    + [f"outputs/{i}" for i in range(5)]
    + [f"keep/{i}" for i in range(5)]
)
# Keys of this alphabet need neither XML escaping nor URL encoding: the fast path.
_PLAIN = re.compile(r"[A-Za-z0-9/._-]*")
# XML-escaped text holds no "<", so [^<]* cannot run past its closing tag.
_OBJECT = re.compile(rb"<Object>(.*?)</Object>", re.S)
_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_VERSION = re.compile(rb"<VersionId>([^<]*)</VersionId>")
_QUIET = re.compile(rb"<Quiet>\s*true\s*</Quiet>", re.I)


def _after(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def _token(kind: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}{key}".encode()).decode()


def _untoken(token: str) -> tuple[str, str]:
    text = base64.urlsafe_b64decode(token.encode()).decode()
    return text[0], text[1:]


@dataclass
class Stats:
    requests: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    peak_in_flight: dict[str, int] = field(default_factory=dict)
    deleted_keys: int = 0
    throttled_keys: int = 0  # per-key SlowDown entries answered
    throttled_requests: int = 0  # whole answers 503 SlowDown
    listed_keys: int = 0
    unsupported: list[str] = field(default_factory=list)
    # How much later than its latency a request was answered: if this grows, the server
    # (or a starved machine) is adding latency of its own.
    late_s_total: float = 0.0
    late_s_max: float = 0.0
    answered: int = 0


@dataclass
class Bucket:
    name: str
    prefix: str = ""
    keys: list[str] = field(default_factory=list)  # sorted
    alive: bytearray = field(default_factory=bytearray)
    fresh: bytearray = field(default_factory=bytearray)
    fresh_stamp: str = OLD_STAMP
    size: int = 1024
    plain: bool = True  # every key matches _PLAIN
    checksums: bool = True  # list ChecksumAlgorithm and ChecksumType, as S3 does
    list_s: float = 0.0
    delete_s: float = 0.0
    rate: float = 0.0  # keys/s; 0 = no throttling
    mode: str = "keys"
    burst: float = 0.0
    tokens: float = 0.0
    refilled: float = 0.0
    stats: Stats = field(default_factory=Stats)

    def take(self, wanted: int) -> int:
        """How many of `wanted` keys the token bucket lets through now."""
        if not self.rate:
            return wanted
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.mode == "503":
            if self.tokens <= 0:
                return 0
            self.tokens -= wanted
            return wanted
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def span(self, prefix: str) -> tuple[int, int]:
        keys = self.keys
        if not prefix:
            return 0, len(keys)
        return bisect.bisect_left(keys, prefix), bisect.bisect_left(keys, _after(prefix))


def generate(
    old: int, fresh: int, subprefixes: int, top_level: int, prefix: str
) -> tuple[list[str], bytearray]:
    """The sorted keys of a seeded bucket and their fresh flags (see the module docstring)."""
    width = max(7, len(str(old + top_level)))
    keys: list[str] = []
    nested = old - top_level if subprefixes else 0
    per = -(-nested // subprefixes) if subprefixes else 0
    jobs = len(str(max(subprefixes - 1, 0))) if subprefixes else 0
    jwidth = max(3, jobs)
    for n in range(old):
        if n < nested:
            keys.append(f"{prefix}job-{n // per:0{jwidth}d}/{n:0{width}d}")
        else:
            keys.append(f"{prefix}{n:0{width}d}")
    # Fresh keys shadow evenly spaced old ones, so they are interleaved with them.
    step = old / fresh if fresh else 0
    keys.extend(keys[int(i * step)] + ".new" for i in range(min(fresh, old)))
    keys.extend(SENTINELS)
    keys.sort()
    flags = bytearray(k.endswith(".new") for k in keys)
    return keys, flags


class Store:
    def __init__(self, list_ms: float, delete_ms: float) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.default_list_s = list_ms / 1000
        self.default_delete_s = delete_ms / 1000
        self.unsupported: list[str] = []

    # -- control ---------------------------------------------------------------------------

    def seed(self, spec: dict[str, Any]) -> dict[str, Any]:
        began = time.monotonic()
        name = str(spec["bucket"])
        prefix = str(spec.get("prefix", "output/"))
        keys, flags = generate(
            int(spec.get("old", 0)),
            int(spec.get("fresh", 0)),
            int(spec.get("subprefixes", 0)),
            int(spec.get("top_level", 0)),
            prefix,
        )
        bucket = Bucket(
            name=name,
            prefix=prefix,
            keys=keys,
            alive=bytearray(b"\x01") * len(keys),
            fresh=flags,
            fresh_stamp=_stamp(time.time() - 1),
            size=int(spec.get("size", 1024)),
            checksums=bool(spec.get("checksums", True)),
            # Generated keys are the prefix plus plain characters; the sentinels are plain.
            plain=_PLAIN.fullmatch(prefix) is not None,
            list_s=self.default_list_s,
            delete_s=self.default_delete_s,
        )
        self.configure(bucket, spec)
        self.buckets[name] = bucket
        return {"bucket": name, "keys": len(keys), "seconds": time.monotonic() - began}

    @staticmethod
    def configure(bucket: Bucket, spec: dict[str, Any]) -> dict[str, Any]:
        """Sets whichever of list_ms, delete_ms, throttle_rate, throttle_mode and
        throttle_burst `spec` names; a new throttle starts with a full token bucket."""
        if "list_ms" in spec:
            bucket.list_s = float(spec["list_ms"]) / 1000
        if "delete_ms" in spec:
            bucket.delete_s = float(spec["delete_ms"]) / 1000
        mode = str(spec.get("throttle_mode", bucket.mode))
        if mode not in ("keys", "503"):
            raise ValueError("throttle_mode must be 'keys' or '503'")
        bucket.mode = mode
        if "throttle_rate" in spec or "throttle_burst" in spec:
            bucket.rate = float(spec.get("throttle_rate", bucket.rate) or 0)
            burst = spec.get("throttle_burst")
            bucket.burst = bucket.rate if burst is None else float(burst)
            bucket.tokens = bucket.burst
            bucket.refilled = time.monotonic()
        return {
            "bucket": bucket.name,
            "list_ms": bucket.list_s * 1000,
            "delete_ms": bucket.delete_s * 1000,
            "throttle_rate": bucket.rate,
            "throttle_mode": bucket.mode,
            "throttle_burst": bucket.burst,
        }

    def check(self, name: str) -> dict[str, Any]:
        """Old keys under the prefix must be gone, every other key kept."""
        bucket = self.buckets[name]
        lo, hi = bucket.span(bucket.prefix)
        alive, fresh, keys = bucket.alive, bucket.fresh, bucket.keys
        old_left: list[str] = []
        fresh_lost: list[str] = []
        old_left_n = fresh_lost_n = 0
        if alive[lo:hi] != fresh[lo:hi]:  # the common case, equal, costs one compare
            for i in range(lo, hi):
                if alive[i] and not fresh[i]:
                    old_left_n += 1
                    if len(old_left) < 5:
                        old_left.append(keys[i])
                elif fresh[i] and not alive[i]:
                    fresh_lost_n += 1
                    if len(fresh_lost) < 5:
                        fresh_lost.append(keys[i])
        outside_lost: list[str] = []
        if alive[:lo].count(0) or alive[hi:].count(0):
            outside = (i for i in range(len(keys)) if not lo <= i < hi)
            outside_lost = [keys[i] for i in outside if not alive[i]]
        stats = bucket.stats
        return {
            "ok": not (old_left_n or fresh_lost_n or outside_lost),
            "old_left": old_left_n,
            "fresh_lost": fresh_lost_n,
            "outside_lost": len(outside_lost),
            "examples": old_left + fresh_lost + outside_lost[:5],
            "remaining": alive.count(1),
            "stats": {
                "requests": stats.requests,
                "peak_in_flight": stats.peak_in_flight,
                "deleted_keys": stats.deleted_keys,
                "throttled_keys": stats.throttled_keys,
                "throttled_requests": stats.throttled_requests,
                "listed_keys": stats.listed_keys,
                "late_ms_mean": 1000 * stats.late_s_total / max(1, stats.answered),
                "late_ms_max": 1000 * stats.late_s_max,
                "unsupported": stats.unsupported[:20],
            },
        }

    # -- S3 operations -------------------------------------------------------------------

    def list_v2(self, bucket: Bucket, query: dict[str, str]) -> bytes:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = min(MAX_KEYS, int(query.get("max-keys", MAX_KEYS)))
        url = query.get("encoding-type") == "url"
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        lo, end = bucket.span(prefix)
        pos = lo
        if token:
            kind, mark = _untoken(token)
            pos = bisect.bisect_left(bucket.keys, _after(mark) if kind == "P" else mark + "\0")
        elif start_after:
            pos = bisect.bisect_right(bucket.keys, start_after)
        contents, prefixes, truncated, last = self._walk(
            bucket, max(pos, lo), end, len(prefix), delimiter, max_keys
        )
        bucket.stats.listed_keys += len(contents)
        enc, echo = self._encoder(bucket, url), self._encoder(None, url)
        head = [
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{NS}">',
            f"<Name>{bucket.name}</Name><Prefix>{echo(prefix)}</Prefix>",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if delimiter:
            head.append(f"<Delimiter>{echo(delimiter)}</Delimiter>")
        if url:
            head.append("<EncodingType>url</EncodingType>")
        if token:
            head.append(f"<ContinuationToken>{token}</ContinuationToken>")
        if start_after:
            head.append(f"<StartAfter>{echo(start_after)}</StartAfter>")
        if truncated:
            head.append(f"<NextContinuationToken>{_token(*last)}</NextContinuationToken>")
        self._render_contents(bucket, contents, enc, head, "Contents", "")
        head.extend(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>" for p in prefixes)
        head.append("</ListBucketResult>")
        return "".join(head).encode()

    def list_versions(self, bucket: Bucket, query: dict[str, str]) -> bytes:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = min(MAX_KEYS, int(query.get("max-keys", MAX_KEYS)))
        url = query.get("encoding-type") == "url"
        marker = query.get("key-marker", "")
        lo, end = bucket.span(prefix)
        pos = lo
        if marker:
            rolled = delimiter and marker.endswith(delimiter) and marker.startswith(prefix)
            # A marker that is a common prefix already returned skips everything under it.
            pos = bisect.bisect_left(bucket.keys, _after(marker) if rolled else marker + "\0")
        contents, prefixes, truncated, last = self._walk(
            bucket, max(pos, lo), end, len(prefix), delimiter, max_keys
        )
        bucket.stats.listed_keys += len(contents)
        enc, echo = self._encoder(bucket, url), self._encoder(None, url)
        head = [
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="{NS}">',
            f"<Name>{bucket.name}</Name><Prefix>{echo(prefix)}</Prefix>",
            f"<KeyMarker>{echo(marker)}</KeyMarker><VersionIdMarker></VersionIdMarker>",
            f"<MaxKeys>{max_keys}</MaxKeys>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if delimiter:
            head.append(f"<Delimiter>{echo(delimiter)}</Delimiter>")
        if url:
            head.append("<EncodingType>url</EncodingType>")
        if truncated:
            head.append(f"<NextKeyMarker>{enc(last[1])}</NextKeyMarker>")
            head.append("<NextVersionIdMarker>null</NextVersionIdMarker>")
        extra = "<VersionId>null</VersionId><IsLatest>true</IsLatest>"
        self._render_contents(bucket, contents, enc, head, "Version", extra)
        head.extend(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>" for p in prefixes)
        head.append("</ListVersionsResult>")
        return "".join(head).encode()

    @staticmethod
    def _encoder(bucket: Bucket | None, url: bool) -> Any:
        """How text goes into the XML: keys of a plain bucket as they are (the fast path),
        anything else (and whatever the request sent) escaped or URL-encoded."""
        if bucket is not None and bucket.plain:
            return lambda s: s
        return (lambda s: quote(s, safe="/")) if url else html.escape

    @staticmethod
    def _walk(
        bucket: Bucket, pos: int, end: int, skip: int, delimiter: str, max_keys: int
    ) -> tuple[list[int], list[str], bool, tuple[str, str]]:
        """Up to `max_keys` live entries from `pos`: key indexes, common prefixes, whether
        more follow, and where the next page resumes (K: after a key, P: after a prefix).
        `skip` is the length of the listed prefix: the delimiter is looked for after it."""
        keys, alive = bucket.keys, bucket.alive
        contents: list[int] = []
        prefixes: list[str] = []
        last = ("K", "")
        if delimiter:
            plen = len(delimiter)
            while len(contents) + len(prefixes) < max_keys:
                pos = alive.find(1, pos, end)
                if pos < 0:
                    break
                key = keys[pos]
                cut = key.find(delimiter, skip)
                if cut >= 0:
                    common = key[: cut + plen]
                    prefixes.append(common)
                    last = ("P", common)
                    pos = bisect.bisect_left(keys, _after(common), pos, end)
                else:
                    contents.append(pos)
                    last = ("K", key)
                    pos += 1
        else:
            while len(contents) < max_keys:
                pos = alive.find(1, pos, end)
                if pos < 0:
                    break
                # Live keys are mostly contiguous: take a run at C speed.
                stop = min(end, pos + max_keys - len(contents))
                contents.extend(compress(range(pos, stop), alive[pos:stop]))
                pos = stop
            if contents:
                last = ("K", keys[contents[-1]])
        truncated = pos >= 0 and alive.find(1, pos, end) >= 0
        return contents, prefixes, truncated, last

    @staticmethod
    def _render_contents(
        bucket: Bucket, indexes: list[int], enc: Any, out: list[str], tag: str, extra: str
    ) -> None:
        tail = f"</Key>{extra}<LastModified>{{}}</LastModified><ETag>{ETAG}</ETag>"
        if bucket.checksums:
            tail += CHECKSUM
        tail += f"<Size>{bucket.size}</Size><StorageClass>STANDARD</StorageClass></{tag}>"
        tails = (tail.format(OLD_STAMP), tail.format(bucket.fresh_stamp))
        opening = f"<{tag}><Key>"
        keys, fresh = bucket.keys, bucket.fresh
        if bucket.plain:
            out.extend(f"{opening}{keys[i]}{tails[fresh[i]]}" for i in indexes)
        else:
            out.extend(f"{opening}{enc(keys[i])}{tails[fresh[i]]}" for i in indexes)

    def delete_objects(self, bucket: Bucket, body: bytes) -> tuple[int, bytes]:
        quiet = _QUIET.search(body) is not None
        versions: list[bytes | None]
        if b"<VersionId>" in body:
            raws, versions = [], []
            for obj in _OBJECT.findall(body):
                found = _KEY.search(obj)
                if found is None:
                    return 400, _error("MalformedXML", "an Object without a Key")
                version = _VERSION.search(obj)
                raws.append(found.group(1))
                versions.append(version.group(1) if version else None)
        else:
            # The fast path: one C-level scan for the keys (escaped text holds no "<").
            raws = _KEY.findall(body)
            versions = [None] * len(raws)
        if len(raws) > MAX_KEYS:
            return 400, _error("MalformedXML", "more than 1000 keys")
        granted = bucket.take(len(raws))
        if granted == 0 and bucket.mode == "503" and bucket.rate:
            bucket.stats.throttled_requests += 1
            return 503, _error("SlowDown", "Please reduce your request rate.")
        out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{NS}">']
        keys, alive, count = bucket.keys, bucket.alive, len(bucket.keys)
        deleted = 0
        texts = [raw.decode() for raw in raws]
        for n, text in enumerate(texts[:granted]):
            key = html.unescape(text) if "&" in text else text
            i = bisect.bisect_left(keys, key)
            if i < count and alive[i] and keys[i] == key:
                alive[i] = 0
                deleted += 1
            if not quiet:  # S3 reports a key that was not there as deleted too
                vid = versions[n]
                tag = f"<VersionId>{vid.decode()}</VersionId>" if vid is not None else ""
                out.append(f"<Deleted><Key>{text}</Key>{tag}</Deleted>")
        for n in range(granted, len(texts)):
            vid = versions[n]
            tag = f"<VersionId>{vid.decode()}</VersionId>" if vid is not None else ""
            out.append(
                f"<Error><Key>{texts[n]}</Key>{tag}<Code>SlowDown</Code>"
                "<Message>Please reduce your request rate.</Message></Error>"
            )
        bucket.stats.deleted_keys += deleted
        bucket.stats.throttled_keys += len(texts) - granted
        out.append("</DeleteResult>")
        return 200, "".join(out).encode()

    def delete_object(self, bucket: Bucket, key: str) -> tuple[int, bytes]:
        if not bucket.take(1):
            if bucket.mode == "503":
                bucket.stats.throttled_requests += 1
            else:
                bucket.stats.throttled_keys += 1
            return 503, _error("SlowDown", "Please reduce your request rate.")
        i = bisect.bisect_left(bucket.keys, key)
        if i < len(bucket.keys) and bucket.keys[i] == key and bucket.alive[i]:
            bucket.alive[i] = 0
            bucket.stats.deleted_keys += 1
        return 204, b""


def _error(code: str, message: str, resource: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{html.escape(message)}</Message><Resource>{html.escape(resource)}</Resource>"
        f"<RequestId>standin</RequestId></Error>"
    ).encode()


# -- HTTP ------------------------------------------------------------------------------------

Response = tuple[int, dict[str, str], bytes]


class Server:
    """HTTP/1.1 with keep-alive on asyncio streams: one task per connection, so a request
    sleeping out its latency never delays another connection's."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await self._body(reader, headers)
                status, extra, payload = await self.handle(method, target, headers, body)
                close = headers.get("connection", "").lower() == "close"
                out = [
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                    "Server: s3standin",
                    "x-amz-request-id: standin",
                    f"Content-Length: {len(payload)}",
                ]
                if payload and "Content-Type" not in extra:
                    out.append("Content-Type: application/xml")
                out.extend(f"{k}: {v}" for k, v in extra.items())
                if close:
                    out.append("Connection: close")
                data = ("\r\n".join(out) + "\r\n\r\n").encode()
                writer.write(data if method == "HEAD" else data + payload)
                await writer.drain()
                if close:
                    return
        except ConnectionError:
            return
        except asyncio.CancelledError:
            # Only at shutdown; Python 3.11's stream callback would log a cancelled
            # connection as an error, so end it quietly.
            return
        finally:
            writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await _trailer(reader)
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length") or 0)
        return await reader.readexactly(length) if length else b""

    async def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        path = unquote(split.path)
        if path.startswith("/_standin/"):
            return self.control(method, path, query, body)
        name, _, key = path.lstrip("/").partition("/")
        if not name:
            if method == "GET":
                return self._list_buckets()
            return self._unsupported(None, method, target)
        bucket = self.store.buckets.get(name)
        if bucket is None:
            return 404, {}, _error("NoSuchBucket", "The specified bucket does not exist", name)
        op, delay = self._operation(bucket, method, key, query)
        if op is None:
            return self._unsupported(bucket, method, target)
        stats = bucket.stats
        stats.requests[op] = stats.requests.get(op, 0) + 1
        stats.in_flight[op] = stats.in_flight.get(op, 0) + 1
        stats.peak_in_flight[op] = max(stats.peak_in_flight.get(op, 0), stats.in_flight[op])
        try:
            began = time.monotonic()
            if delay:
                await asyncio.sleep(delay)
            try:
                answer = self._answer(bucket, op, key, query, body)
            except ValueError as exc:  # e.g. max-keys=abc, a token this server never made
                answer = 400, {}, _error("InvalidArgument", str(exc))
            except Exception as exc:  # a bug here must not take the connection down
                traceback.print_exc()
                answer = 500, {}, _error("InternalError", f"{type(exc).__name__}: {exc}")
            late = time.monotonic() - began - delay
            stats.late_s_total += late
            stats.late_s_max = max(stats.late_s_max, late)
            stats.answered += 1
            return answer
        finally:
            stats.in_flight[op] -= 1

    @staticmethod
    def _operation(
        bucket: Bucket, method: str, key: str, query: dict[str, str]
    ) -> tuple[str | None, float]:
        if key:
            if method == "DELETE" and not query:
                return "DeleteObject", bucket.delete_s
            return None, 0.0
        if method == "POST" and "delete" in query:
            return "DeleteObjects", bucket.delete_s
        if method == "GET" and query.get("list-type") == "2":
            return "ListObjectsV2", bucket.list_s
        if method == "GET" and "versions" in query:
            return "ListObjectVersions", bucket.list_s
        if method == "GET" and "location" in query:
            return "GetBucketLocation", bucket.list_s
        if method == "HEAD" and not query:
            return "HeadBucket", bucket.list_s
        return None, 0.0

    def _answer(
        self, bucket: Bucket, op: str, key: str, query: dict[str, str], body: bytes
    ) -> Response:
        store = self.store
        if op == "ListObjectsV2":
            return 200, {}, store.list_v2(bucket, query)
        if op == "ListObjectVersions":
            return 200, {}, store.list_versions(bucket, query)
        if op == "DeleteObjects":
            status, payload = store.delete_objects(bucket, body)
            return status, {}, payload
        if op == "DeleteObject":
            status, payload = store.delete_object(bucket, key)
            return status, {}, payload
        if op == "GetBucketLocation":
            return 200, {}, f'<LocationConstraint xmlns="{NS}"/>'.encode()
        return 200, {"x-amz-bucket-region": "us-east-1"}, b""  # HeadBucket

    def _list_buckets(self) -> Response:
        names = "".join(
            f"<Bucket><Name>{n}</Name><CreationDate>{OLD_STAMP}</CreationDate></Bucket>"
            for n in sorted(self.store.buckets)
        )
        xml = f'<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>standin</ID></Owner>'
        return 200, {}, f"{xml}<Buckets>{names}</Buckets></ListAllMyBucketsResult>".encode()

    def _unsupported(self, bucket: Bucket | None, method: str, target: str) -> Response:
        what = f"{method} {target[:200]}"
        (bucket.stats.unsupported if bucket else self.store.unsupported).append(what)
        print(f"s3standin: not implemented: {what}", file=sys.stderr)
        return 501, {}, _error("NotImplemented", f"the stand-in does not implement {method}")

    def control(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        store = self.store
        try:
            if path == "/_standin/seed" and method == "POST":
                answer: dict[str, Any] = store.seed(json.loads(body))
            elif path == "/_standin/check" and method == "GET":
                answer = store.check(query["bucket"])
            elif path == "/_standin/configure" and method == "POST":
                spec = json.loads(body)
                answer = store.configure(store.buckets[str(spec["bucket"])], spec)
            elif path == "/_standin/drop" and method == "POST":
                store.buckets.pop(query["bucket"], None)
                answer = {"dropped": query["bucket"]}
            elif path == "/_standin/reset" and method == "POST":
                store.buckets.clear()
                answer = {"reset": True}
            elif path == "/_standin/health":
                answer = {"pid": os.getpid(), "buckets": sorted(store.buckets)}
            else:
                return 404, {}, b'{"error": "no such control endpoint"}'
        except (KeyError, ValueError) as exc:
            return (
                400,
                {"Content-Type": "application/json"},
                json.dumps({"error": str(exc)}).encode(),
            )
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()


async def _trailer(reader: asyncio.StreamReader) -> None:
    """Reads the (usually empty) trailer section that ends a chunked body."""
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass


_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    501: "Not Implemented",
    503: "Slow Down",
}


async def serve(host: str, port: int, store: Store) -> None:
    listener = await asyncio.start_server(Server(store).connection, host, port, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    # The parent reads this line to learn the port (it may have asked for port 0).
    print(f"s3standin listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with listener:
        await stop.wait()


# -- client side -----------------------------------------------------------------------------


class StandIn:
    """The stand-in in its own process (so its CPU is apart from the clients'), with
    helpers for the control API. `with StandIn() as s3: s3.seed(bucket="b", old=1000)`."""

    def __init__(self, list_ms: float = 0, delete_ms: float = 0, port: int = 0) -> None:
        self.argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--port",
            str(port),
            "--list-ms",
            str(list_ms),
            "--delete-ms",
            str(delete_ms),
        ]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> StandIn:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError(f"the S3 stand-in did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())

    def seed(self, **spec: Any) -> dict[str, Any]:
        """(Re)creates a bucket: see the module docstring for the keys of `spec`."""
        result: dict[str, Any] = self._call("POST", "/_standin/seed", spec)
        return result

    def check(self, bucket: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/_standin/check?bucket={quote(bucket)}")
        return result

    def configure(self, **spec: Any) -> dict[str, Any]:
        """Changes a bucket's latencies or throttle mid-run: see Store.configure."""
        result: dict[str, Any] = self._call("POST", "/_standin/configure", spec)
        return result

    def drop(self, bucket: str) -> None:
        self._call("POST", f"/_standin/drop?bucket={quote(bucket)}", {})

    def credentials_env(self) -> dict[str, str]:
        """Dummy credentials: the stand-in checks no signature, but the SDKs want some."""
        return {
            "AWS_ACCESS_KEY_ID": "standin",
            "AWS_SECRET_ACCESS_KEY": "standin-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--list-ms", type=float, default=0, help="default list latency")
    parser.add_argument("--delete-ms", type=float, default=0, help="default delete latency")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, Store(args.list_ms, args.delete_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
