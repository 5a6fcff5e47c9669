"""The boto3 client of the S3 target and the translation of its errors into plain messages.

Imported only by cleanup.targets.s3, which the target registry loads lazily, so
a run without S3 targets never imports the AWS SDK.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.retries import standard
from botocore.utils import parse_timestamp

from cleanup.targets.s3 import fastpath
from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Generous, as a slow store needs: after a stop request no caller waits on them (the
# target stops waiting for answers and abandons what is still unanswered, and the
# retry handler below retries nothing), so they do not bound the stop.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
# Attempts per request, the first included. Enough to ride out SlowDown/503 bursts:
# standard mode backs off exponentially (up to 20 s) between them.
MAX_ATTEMPTS = 10
# The first request only tells whether the store can be used at all; a missing
# endpoint must fail the target in seconds, not after a minute of back-off.
PROBE_ATTEMPTS = 3
DEFAULT_REGION = "us-east-1"
# Codes by which a store asks for a lower request rate: counted as throttling.
THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "503",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
# Codes meaning "try again later" rather than "this will never work".
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "500",
        "503",
    }
)


def _config(attempts: int, endpoint_url: str, pool: int) -> Config:
    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=pool,
        # S3-compatible stores (MinIO, Ceph, R2) are reached by path, not by bucket host name.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )


def _timestamp(text: str) -> datetime:
    """ISO 8601 as S3 lists it ("2024-05-01T12:00:00.000Z"), parsed by the standard library.

    botocore's default (dateutil) costs about 70% of the parse time of a 1,000-key
    listing page, and the listing is the sequential part of the pipeline. Anything
    else (HTTP dates in headers) goes to botocore's own parser.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return parse_timestamp(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _add_content_md5(request: Any, **_: Any) -> None:
    """Content-MD5 on DeleteObjects, which botocore >= 1.36 no longer sends (it sends a CRC32).

    Many S3-compatible stores (Ceph RGW, older MinIO, s3proxy...) still refuse a
    DeleteObjects request without it. Hooked before signing, so the header is signed too.
    """
    body = request.body
    if isinstance(body, bytes | bytearray) and "Content-MD5" not in request.headers:
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


def _answer_code(response: Any) -> str:
    """The error code of a (http response, parsed answer) pair, "" for none."""
    if not response:
        return ""
    http, parsed = response
    code = str((parsed or {}).get("Error", {}).get("Code") or "")
    status = getattr(http, "status_code", 200)
    return code or (str(status) if status >= 500 else "")


def _retry_until_stop(
    client: S3Client,
    attempts: int,
    stop: threading.Event,
    on_throttle: Callable[[], None] | None,
) -> None:
    """botocore's standard retries, but with back-off sleeps that end at the stop request
    and no retry at all after it; throttle answers are told to `on_throttle`.

    botocore sleeps between attempts with time.sleep (up to 20 s each), which no stop
    request can cut short. This handler goes first and always answers (False: no retry;
    0: retry now, after it waited itself on the stop), so the built-in one is never asked;
    the decision and the delay are still the standard policy's. A DeleteObjects answer
    saying "try later" (503, SlowDown, ...) is not retried here but handed to the target,
    whose window of requests in flight adapts to it; connection errors still are.
    """
    policy = standard.register_retry_handler(client, max_attempts=attempts)

    def needs_retry(**kwargs: Any) -> float | bool:
        code = _answer_code(kwargs.get("response"))
        operation = getattr(kwargs.get("operation"), "name", "")
        if operation == "DeleteObjects" and code in RETRYABLE_CODES:
            return False
        if code in THROTTLE_CODES and on_throttle is not None:
            on_throttle()
        if stop.is_set():
            return False
        delay = policy.needs_retry(**kwargs)
        if delay is None or stop.wait(delay):
            return False
        return 0

    # The stubs type every handler as returning None; needs-retry handlers return a delay.
    client.meta.events.register_first("needs-retry.s3", needs_retry)  # type: ignore[arg-type]


def make_client(
    settings: S3Settings,
    attempts: int,
    stop: threading.Event,
    on_throttle: Callable[[], None] | None = None,
) -> S3Client:
    """An S3 client whose credentials come from the SDK's default chain only (environment,
    web identity / IRSA, instance profile): no key is ever configured here.

    Built with botocore directly (the same chain and client boto3 would build), which
    spares the run boto3's and s3transfer's import time. Its retries end at `stop`; its
    listing and DeleteObjects XML goes through cleanup.targets.s3.fastpath, so their
    answers carry only the members the target reads. Its pool has a connection for every
    request the window of deletes and the listing streams may have open at once.
    """
    pool = settings.max_in_flight + settings.list_parallelism + 2
    core = botocore.session.get_session()
    fastpath.install_parser(core, _timestamp)
    region = settings.region or core.get_config_variable("region") or DEFAULT_REGION
    client = cast(
        "S3Client",
        core.create_client(
            "s3",
            region_name=region,
            endpoint_url=settings.endpoint_url or None,
            config=_config(attempts, settings.endpoint_url, pool),
        ),
    )
    fastpath.install_hooks(client)
    if settings.endpoint_url:
        client.meta.events.register("before-sign.s3.DeleteObjects", _add_content_md5)
    _retry_until_stop(client, attempts, stop, on_throttle)
    return client


def where(settings: S3Settings) -> str:
    """The store, for messages: host and port only, so no credential in a URL can leak."""
    if not settings.endpoint_url:
        return f"AWS S3 ({settings.region or 'default region'})"
    parts = urlsplit(settings.endpoint_url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"endpoint {parts.scheme}://{host}{port}"


def error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    if code:
        return code
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status or "unknown")


# AWS's bucket naming rules. S3-compatible stores may allow more (Ceph's relaxed names), so a
# name outside them is never refused up front: it only explains an error the store gave.
_AWS_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket_name_problem(bucket: str) -> str:
    """Why `bucket` is not a valid AWS bucket name ("" when it is one)."""
    if _AWS_BUCKET_NAME.fullmatch(bucket) and ".." not in bucket:
        return ""
    return (
        f"{bucket!r} is not a valid S3 bucket name (3 to 63 lowercase letters, digits, dots "
        "and hyphens, starting and ending with a letter or a digit)"
    )


def describe(exc: Exception, settings: S3Settings, action: str) -> str:
    """A one-line operator message naming bucket, prefix, store and the S3 error code."""
    place = f"s3://{settings.bucket}/{settings.prefix} at {where(settings)}"
    name_problem = bucket_name_problem(settings.bucket)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message") or "")
        hints = {
            "NoSuchBucket": "the bucket does not exist",
            "InvalidBucketName": "the store refuses this bucket name",
            "AccessDenied": "access denied (check the IAM policy for this bucket and prefix)",
            "InvalidAccessKeyId": "the access key is not known to the store",
            "SignatureDoesNotMatch": "the secret key does not match the access key",
            "PermanentRedirect": "the bucket is in another region (set region)",
            "AuthorizationHeaderMalformed": "wrong region for this bucket (set region)",
        }
        detail = hints.get(code, message or "request failed")
        if name_problem and code in ("NoSuchBucket", "InvalidBucketName"):
            detail += f"; {name_problem}"
        return f"cannot {action} {place}: {code}: {detail}"
    if isinstance(exc, ParamValidationError):
        # botocore refused the request before sending it; its report is multi-line and
        # quotes regular expressions, so say what is wrong in plain words where we can.
        if name_problem:
            return f"cannot {action} {place}: {name_problem}; set bucket to its exact name"
        report = _one_line(str(exc.kwargs.get("report", exc)))
        return f"cannot {action} {place}: invalid request: {report}"
    if isinstance(exc, NoCredentialsError):
        return (
            f"cannot {action} {place}: no AWS credentials found in the default chain "
            "(environment, web identity / IRSA, instance profile)"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return f"cannot {action} {place}: the store is unreachable (connection failed)"
    if isinstance(exc, ReadTimeoutError):
        return f"cannot {action} {place}: the store did not answer within {READ_TIMEOUT_S} s"
    return f"cannot {action} {place}: {type(exc).__name__}: {_one_line(str(exc))}"


def _one_line(text: str, limit: int = 300) -> str:
    """An SDK message as one line of bounded length (some quote whole answers)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def retries_cut_short(stop: threading.Event, exc: Exception) -> bool:
    """Whether `exc` is one the stop request kept from being retried (a throttled answer,
    a connection error): the target is then interrupted, not failed."""
    if not stop.is_set():
        return False
    return not isinstance(exc, ClientError) or error_code(exc) in RETRYABLE_CODES
