"""What a dry run can know on S3 without a write: the versions Object Lock keeps.

With `versions = "all"`, DeleteObjects refuses (a per-key AccessDenied) to remove a
version under a legal hold or an unexpired retention, GOVERNANCE or COMPLIANCE (the
target never asks to bypass governance). Removing a delete marker is allowed, and so
is `versions = "current"`, whose deletes only add delete markers. So a dry run on a
bucket with Object Lock reads each eligible version's lock (HeadObject with its
VersionId returns it) and predicts those failures.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from cleanup.targets.base import TargetContext
from cleanup.targets.s3.client import describe, error_code
from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The code S3 gives a version that Object Lock keeps, so predicted and real failures match.
LOCKED = "AccessDenied"
_GONE = frozenset({"404", "NoSuchKey", "NoSuchVersion"})


class LockCheck:
    """Reads the Object Lock of versions; gives up (with one warning) when it cannot."""

    def __init__(self, client: S3Client, settings: S3Settings, start: datetime) -> None:
        self._client = client
        self._settings = settings
        self._start = start  # the run's clock: a retention that ends before it no longer holds
        self._lock = threading.Lock()
        self._blind = False

    def held(self, ctx: TargetContext, key: str, version_id: str) -> str | None:
        """Why this version cannot be deleted (legal hold, retention), or None."""
        if self._blind:
            return None
        try:
            head = self._client.head_object(
                Bucket=self._settings.bucket, Key=key, VersionId=version_id
            )
        except ClientError as exc:
            if error_code(exc) in _GONE:
                return None  # deleted since the listing: deleting it again succeeds
            self._give_up(ctx, describe(exc, self._settings, "read the Object Lock of"), key)
            return None
        except BotoCoreError as exc:
            self._give_up(ctx, describe(exc, self._settings, "read the Object Lock of"), key)
            return None
        return self._reason(head)

    def _reason(self, head: Any) -> str | None:
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return "Object Lock legal hold"
        mode = head.get("ObjectLockMode")
        until = head.get("ObjectLockRetainUntilDate")
        held = mode in ("GOVERNANCE", "COMPLIANCE") and isinstance(until, datetime)
        if held and until > self._start:
            return f"Object Lock {mode} retention until {until.isoformat()}"
        return None

    def _give_up(self, ctx: TargetContext, problem: str, key: str) -> None:
        with self._lock:
            if self._blind:
                return
            self._blind = True
        ctx.warning(
            "object_lock_unknown",
            f"{problem} (key {key!r}): the dry run no longer predicts Object Lock failures; "
            "versions under a legal hold or retention would fail in a real run",
            bucket=self._settings.bucket,
            prefix=self._settings.prefix,
        )


def lock_check(
    ctx: TargetContext, client: S3Client, settings: S3Settings, start: datetime
) -> LockCheck | None:
    """A LockCheck when the bucket has Object Lock (one GetObjectLockConfiguration), else None.

    A store that will not tell (no s3:GetBucketObjectLockConfiguration, an S3-compatible
    store without the API) gets a warning: the prediction is then blind to locks.
    """
    try:
        answer = client.get_object_lock_configuration(Bucket=settings.bucket)
    except ClientError as exc:
        if error_code(exc) == "ObjectLockConfigurationNotFoundError":
            return None
        problem = describe(exc, settings, "read the Object Lock configuration of")
    except BotoCoreError as exc:
        problem = describe(exc, settings, "read the Object Lock configuration of")
    else:
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        return LockCheck(client, settings, start) if enabled == "Enabled" else None
    ctx.warning(
        "object_lock_unknown",
        f"{problem}: the dry run cannot predict which versions Object Lock keeps "
        "(a real run fails on those with AccessDenied)",
        bucket=settings.bucket,
        prefix=settings.prefix,
    )
    return None
