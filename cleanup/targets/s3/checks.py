"""Checks of the S3 target that change nothing: the preflight, and the `target_warning`
for a prefix under which nothing at all was listed.

A target whose prefix holds nothing exits 0 forever with nothing deleted, which is almost
always a wrong prefix (`output-archive/` where `output/` was meant, or the other way round).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from cleanup.targets.base import TargetContext
from cleanup.targets.s3.client import describe
from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def preflight_problems(client: S3Client, settings: S3Settings) -> list[str]:
    """One listing request of at most one key (the client's retries should be short).

    It shows that credentials were found, the store answers, the bucket exists and this
    identity may list the prefix. Whether it may delete there cannot be known without
    deleting (IAM, bucket policy, SCP, Object Lock, MFA delete, KMS): not checked.
    """
    try:
        if settings.versions == "all":
            client.list_object_versions(Bucket=settings.bucket, Prefix=settings.prefix, MaxKeys=1)
        else:
            client.list_objects_v2(Bucket=settings.bucket, Prefix=settings.prefix, MaxKeys=1)
    except (ClientError, BotoCoreError) as exc:
        return [describe(exc, settings, "list")]
    return []


def _neighbour(client: S3Client, settings: S3Settings) -> str | None:
    """A key that starts like the prefix without its trailing slash (`output` for
    `output/`) but lies outside it, e.g. `output-archive/x`; None when there is none."""
    stem = settings.prefix.rstrip("/")
    if not stem:
        return None
    try:
        # Two keys: the first may be the folder's own marker object, `output/` itself.
        page = client.list_objects_v2(Bucket=settings.bucket, Prefix=stem, MaxKeys=2)
    except (ClientError, BotoCoreError):
        return None  # only a hint: the warning stands without it
    for obj in page.get("Contents", ()):
        if not obj["Key"].startswith(settings.prefix):
            return str(obj["Key"])
    return None


def warn_empty(ctx: TargetContext, client: S3Client, settings: S3Settings) -> None:
    """Warn that the prefix holds no object (the listing found none), with a hint when
    keys that start like it exist beside it (one more request, made only then)."""
    place = f"s3://{settings.bucket}/{settings.prefix}"
    what = "no object" if settings.versions == "current" else "no object version or marker"
    message = f"{place} holds {what}: this target can never delete anything"
    fields: dict[str, Any] = {"bucket": settings.bucket, "prefix": settings.prefix}
    near = _neighbour(client, settings)
    if near is not None:
        fields["similar_key"] = near
        message += (
            f"; keys beside it start with {settings.prefix.rstrip('/')!r} (e.g. {near!r}): "
            "is the prefix right?"
        )
    ctx.warning("prefix_empty", message, **fields)
