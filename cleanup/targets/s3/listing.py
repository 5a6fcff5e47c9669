"""The S3 target's listing: pages of ListObjectsV2, or ListObjectVersions for
`versions = "all"`, and the entries they hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# key, version id (None for a current object), size, LastModified, is a delete marker
Entry = tuple[str, str | None, int, datetime, bool]


class Page(NamedTuple):
    entries: list[Entry]
    prefixes: list[str]  # CommonPrefixes (only when a delimiter was given)
    next: dict[str, str] | None  # the marker/token arguments of the next page; None: last


def fetch_page(
    client: S3Client,
    settings: S3Settings,
    prefix: str,
    after: dict[str, str] | None,
    delimiter: str | None = None,
) -> Page:
    """One ListObjectsV2 (or ListObjectVersions for `versions = "all"`) request."""
    args: dict[str, Any] = {"Bucket": settings.bucket, "Prefix": prefix, **(after or {})}
    if delimiter:
        args["Delimiter"] = delimiter
    all_versions = settings.versions == "all"
    if all_versions:
        answer: dict[str, Any] = dict(client.list_object_versions(**args))
    else:
        answer = dict(client.list_objects_v2(**args))
    prefixes = [str(p["Prefix"]) for p in answer.get("CommonPrefixes", ())]
    following: dict[str, str] | None = None
    if answer.get("IsTruncated"):
        if all_versions:
            following = {"KeyMarker": answer["NextKeyMarker"]}
            if answer.get("NextVersionIdMarker"):
                following["VersionIdMarker"] = answer["NextVersionIdMarker"]
        else:
            following = {"ContinuationToken": answer["NextContinuationToken"]}
    return Page(list(entries(answer, all_versions)), prefixes, following)


def entries(page: dict[str, Any], all_versions: bool) -> Iterator[Entry]:
    if all_versions:
        for v in page.get("Versions", ()):
            yield v["Key"], v["VersionId"], v["Size"], v["LastModified"], False
        for marker in page.get("DeleteMarkers", ()):
            yield marker["Key"], marker["VersionId"], 0, marker["LastModified"], True
    else:
        for obj in page.get("Contents", ()):
            yield obj["Key"], None, obj["Size"], obj["LastModified"], False
