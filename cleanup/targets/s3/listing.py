"""The S3 target's listing: pages of ListObjectsV2, or ListObjectVersions for
`versions = "all"`, and the entries they hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# key, version id (None for a current object), size, LastModified, is a delete marker
Entry = tuple[str, str | None, int, datetime, bool]


def list_pages(settings: S3Settings, probe: S3Client, work: S3Client) -> Iterator[dict[str, Any]]:
    """Listing pages under the prefix; the first through the probe client, so an unusable
    store fails fast, the others through the work client."""
    bucket, prefix = settings.bucket, settings.prefix
    api = probe
    if settings.versions == "all":
        markers: dict[str, Any] = {}
        while True:
            versions = api.list_object_versions(Bucket=bucket, Prefix=prefix, **markers)
            yield dict(versions)
            if not versions.get("IsTruncated"):
                return
            markers = {"KeyMarker": versions["NextKeyMarker"]}
            if versions.get("NextVersionIdMarker"):
                markers["VersionIdMarker"] = versions["NextVersionIdMarker"]
            api = work
    else:
        token: dict[str, Any] = {}
        while True:
            page = api.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
            yield dict(page)
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}
            api = work


def entries(page: dict[str, Any], all_versions: bool) -> Iterator[Entry]:
    if all_versions:
        for v in page.get("Versions", ()):
            yield v["Key"], v["VersionId"], v["Size"], v["LastModified"], False
        for marker in page.get("DeleteMarkers", ()):
            yield marker["Key"], marker["VersionId"], 0, marker["LastModified"], True
    else:
        for obj in page.get("Contents", ()):
            yield obj["Key"], None, obj["Size"], obj["LastModified"], False
