"""The S3 target's listing: pages of ListObjectsV2, or ListObjectVersions for
`versions = "all"`, and the entries they hold."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# key, version id (None for a current object), size, LastModified, is a delete marker
Entry = tuple[str, str | None, int, datetime, bool]


class Page(NamedTuple):
    """One listing answer, reduced to what the target uses."""

    entries: list[Entry]
    prefixes: list[str]  # CommonPrefixes (only when a delimiter was given)
    next: dict[str, str] | None  # the marker/token arguments for the next page; None: last


def fetch_page(
    client: S3Client,
    settings: S3Settings,
    prefix: str,
    after: dict[str, str] | None,
    delimiter: str | None = None,
) -> Page:
    """One ListObjectsV2 request (ListObjectVersions for `versions = "all"`) under `prefix`,
    continuing from `after` (a previous page's `next`; None for the first page)."""
    args: dict[str, Any] = {"Bucket": settings.bucket, "Prefix": prefix, **(after or {})}
    if delimiter is not None:
        args["Delimiter"] = delimiter
    if settings.versions == "all":
        answer: Any = client.list_object_versions(**args)
        found: list[Entry] = [
            (v["Key"], v["VersionId"], v["Size"], v["LastModified"], False)
            for v in answer.get("Versions", ())
        ]
        found.extend(
            (m["Key"], m["VersionId"], 0, m["LastModified"], True)
            for m in answer.get("DeleteMarkers", ())
        )
        more: dict[str, str] | None = None
        if answer.get("IsTruncated"):
            more = {"KeyMarker": answer["NextKeyMarker"]}
            if answer.get("NextVersionIdMarker"):
                more["VersionIdMarker"] = answer["NextVersionIdMarker"]
    else:
        answer = client.list_objects_v2(**args)
        found = [
            (o["Key"], None, o["Size"], o["LastModified"], False)
            for o in answer.get("Contents", ())
        ]
        more = None
        if answer.get("IsTruncated"):
            more = {"ContinuationToken": answer["NextContinuationToken"]}
    prefixes = [p["Prefix"] for p in answer.get("CommonPrefixes", ())]
    return Page(found, prefixes, more)
