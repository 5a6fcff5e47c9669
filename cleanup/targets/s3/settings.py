"""The S3 target's settings: declared once (see cleanup.schema), checked here.

Imports nothing of the AWS SDK: the configuration is read on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cleanup.redact import redact
from cleanup.schema import (
    ConfigWarning,
    Kind,
    Problems,
    boolean,
    choice,
    duration,
    env_entry,
    integer,
    string,
    strings,
)

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class S3Settings:
    kind: ClassVar[str] = "s3"
    name: str = string("Unique across all targets; shows in logs as `target`.", non_empty=True)
    bucket: str = string("Bucket name (not a URL).", non_empty=True, env="CLEANUP_S3_BUCKET")
    prefix: str = string(
        "The folder swept: `output` means `output/`; required and non-empty unless "
        "`allow_whole_bucket = true`.",
        env="CLEANUP_S3_PREFIX",
    )
    max_age: int = duration(
        "Objects older than this go (by `LastModified`); default: the global `max_age`.",
        default=None,
    )
    endpoint_url: str = string(
        "MinIO, Ceph, R2, ...: an http(s) URL; empty = AWS.", "", env="CLEANUP_S3_ENDPOINT_URL"
    )
    region: str = string(
        "Region; empty = the SDK's default chain, else us-east-1.", "", env="CLEANUP_S3_REGION"
    )
    exclude: tuple[str, ...] = strings(
        "fnmatch globs on the key relative to the prefix, as for volumes."
    )
    versions: str = choice(
        '"current": current objects only; "all": every version and delete marker older '
        "than the cutoff is removed for good.",
        ("current", "all"),
        "current",
    )
    allow_whole_bucket: bool = boolean("Allow an empty prefix (the whole bucket).", False)
    list_parallelism: int = integer(
        "Listing streams over sub-prefixes (`output/<job>/...`); 1 = one stream.",
        8,
        minimum=1,
        maximum=64,
    )
    throttle_patience: int = duration(
        "Give throttled keys up only after this long with no deletion.", 300
    )
    max_in_flight: int = integer(
        "Most DeleteObjects requests in flight; fewer while the store throttles.",
        64,
        minimum=1,
        maximum=256,
    )


def _bucket(values: dict[str, Any], where: str, problems: Problems) -> None:
    bucket = values.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        return
    # A URL or a path where a bucket name goes: S3 would only answer "invalid bucket name".
    if "://" in bucket or "/" in bucket:
        rest = bucket.split("://", 1)[1] if "://" in bucket else bucket
        name, _, key_prefix = rest.partition("/")
        fix = f'bucket = "{name}"' + (f' and prefix = "{key_prefix}"' if key_prefix else "")
        problems.add(f"{where}: bucket = {bucket!r}: a bucket name, not a URL or path: write {fix}")


def _prefix_warnings(prefix: str, name: str, where: str, problems: Problems) -> None:
    if _GLOB_CHARS & set(prefix):
        problems.warn(
            ConfigWarning(
                "s3_prefix_glob",
                "prefix",
                f"{where}: prefix = {prefix!r} has glob characters, but an S3 prefix is "
                "literal: it matches only keys that start with those very characters; "
                "name the folder in prefix and put patterns in exclude",
                name,
                "s3",
            )
        )
    if prefix.startswith("/"):
        problems.warn(
            ConfigWarning(
                "s3_prefix_leading_slash",
                "prefix",
                f"{where}: prefix = {prefix!r} starts with '/', so it matches only keys "
                f"that start with '/' (S3 keys rarely do): did you mean {prefix.lstrip('/')!r}?",
                name,
                "s3",
            )
        )


def _check(values: dict[str, Any], where: str, problems: Problems) -> None:
    _bucket(values, where, problems)
    if not isinstance(values.get("prefix"), str):
        return  # missing or refused: already reported
    prefix = values["prefix"]
    _prefix_warnings(prefix, values.get("name") or "", where, problems)
    if not prefix.strip("/") and not values["allow_whole_bucket"]:
        problems.add(
            f"{where}: prefix = {prefix!r}: must name a folder; "
            "set allow_whole_bucket = true to sweep the whole bucket"
        )
    # A prefix names a folder, so `output` must never match `output-archive/`.
    stripped = prefix if prefix.strip("/") else ""
    values["prefix"] = stripped if not stripped or stripped.endswith("/") else stripped + "/"
    endpoint = values["endpoint_url"]
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        problems.add(f"{where}: endpoint_url = {redact(endpoint)!r}: expected an http(s) URL")


def _quick(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    entry = env_entry(S3Settings, environ)
    if not entry:
        return []
    entry.setdefault("bucket", "")
    return [("CLEANUP_S3_*", {"name": "s3", **entry})]


KIND = Kind("s3", S3Settings, _check, _quick)
