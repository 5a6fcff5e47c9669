"""S3's XML on the hot path, read and written without botocore's generic machinery.

botocore's shape-driven parser builds and walks an ElementTree of every answer: about
20 ms of CPU for a 1000-key listing page, plus a second whole parse looking for an error
inside a 200 answer; its validator and serializer do the same for every 1000-key
DeleteObjects body. Those costs are per key, and the listing is the sequential part of
the target (docs/s3.md, "CPU per key"). Here the same results come from a few regular
expressions over the raw text.

They read only the plain XML S3 writes: elements without attributes or namespace
prefixes (empty ones also written `<Name/>`), the five predefined entities and character
references. An answer
outside that subset (a comment, CDATA, a DOCTYPE, a raw control character...) gives
None, and botocore's own parser reads it: this module can change speed, never results.
Nothing here imports botocore; cleanup.targets.s3.fastpath hooks it in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# How a field's text becomes its value, as botocore's parser converts each type.
STR, INT, BOOL, TIME = "str", "int", "bool", "time"


@dataclass(frozen=True)
class Answer:
    """What is read of one kind of answer: the root element, the top-level fields, and
    for each repeated element the list it goes to and the fields read of it."""

    root: str
    top: Mapping[str, str]
    items: Mapping[str, tuple[str, Mapping[str, str]]]
    # Derived: the start tags of items to split on, any start tag of an item (also one
    # written `<Contents >`), and per item element the fields read of it.
    split_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    start_re: re.Pattern[str] = field(init=False, repr=False, compare=False)
    field_re: Mapping[str, re.Pattern[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = "|".join(self.items)
        fields = {
            tag: re.compile(rf"<({'|'.join(wanted)})>([^<]*)</\1>")
            for tag, (_, wanted) in self.items.items()
        }
        object.__setattr__(self, "split_re", re.compile(rf"<({names})>"))
        object.__setattr__(self, "start_re", re.compile(rf"<(?:{names})[\s>]"))
        object.__setattr__(self, "field_re", fields)


# Per object only what the target reads: key, version, size, age, marker. ETag,
# StorageClass, Owner, checksums and RestoreStatus are left out, and so absent from the
# client's answers (cleanup.targets.s3.fastpath says so where the client is made).
LIST_OBJECTS_V2 = Answer(
    root="ListBucketResult",
    top={
        "IsTruncated": BOOL,
        "Name": STR,
        "Prefix": STR,
        "Delimiter": STR,
        "MaxKeys": INT,
        "EncodingType": STR,
        "KeyCount": INT,
        "ContinuationToken": STR,
        "NextContinuationToken": STR,
        "StartAfter": STR,
    },
    items={
        "Contents": ("Contents", {"Key": STR, "LastModified": TIME, "Size": INT}),
        "CommonPrefixes": ("CommonPrefixes", {"Prefix": STR}),
    },
)
LIST_OBJECT_VERSIONS = Answer(
    root="ListVersionsResult",
    top={
        "IsTruncated": BOOL,
        "KeyMarker": STR,
        "VersionIdMarker": STR,
        "NextKeyMarker": STR,
        "NextVersionIdMarker": STR,
        "Name": STR,
        "Prefix": STR,
        "Delimiter": STR,
        "MaxKeys": INT,
        "EncodingType": STR,
    },
    items={
        "Version": (
            "Versions",
            {"Key": STR, "VersionId": STR, "IsLatest": BOOL, "LastModified": TIME, "Size": INT},
        ),
        "DeleteMarker": (
            "DeleteMarkers",
            {"Key": STR, "VersionId": STR, "IsLatest": BOOL, "LastModified": TIME},
        ),
        "CommonPrefixes": ("CommonPrefixes", {"Prefix": STR}),
    },
)
DELETE_OBJECTS = Answer(
    root="DeleteResult",
    top={},
    items={
        "Deleted": (
            "Deleted",
            {"Key": STR, "VersionId": STR, "DeleteMarker": BOOL, "DeleteMarkerVersionId": STR},
        ),
        "Error": ("Errors", {"Key": STR, "VersionId": STR, "Code": STR, "Message": STR}),
    },
)
# By botocore's name of the operation's output shape.
ANSWERS = {
    "ListObjectsV2Output": LIST_OBJECTS_V2,
    "ListObjectVersionsOutput": LIST_OBJECT_VERSIONS,
    "DeleteObjectsOutput": DELETE_OBJECTS,
}

_HEAD = re.compile(r"\s*(?:<\?xml [^<>]*\?>\s*)?<([A-Za-z][\w.-]*)(?:\s[^<>]*)?>")
_HEAD_BYTES = re.compile(rb"\s*(?:<\?xml [^<>]*\?>\s*)?<([A-Za-z][\w.-]*)[\s>]")
# An attribute (in S3's answers only the root element has one, the namespace).
_ATTRIBUTE = re.compile(r"=\s*[\"']")
_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_FIELD = re.compile(r"<([A-Za-z][\w.-]*)>([^<]*)</\1>")
_EMPTY = re.compile(r"<([A-Za-z][\w.-]*)/>")


class _Unsupported(Exception):
    """The text is outside the subset read here."""


def _entity(match: re.Match[str]) -> str:
    named, decimal, hexadecimal = match.groups()
    if named:
        return _NAMED[named]
    point = int(decimal) if decimal else int(hexadecimal, 16)
    # XML's Char production: a reference to anything else is not well-formed.
    if point in (0x9, 0xA, 0xD) or 0x20 <= point <= 0xD7FF or 0xE000 <= point <= 0xFFFD:
        return chr(point)
    if 0x10000 <= point <= 0x10FFFF:
        return chr(point)
    raise _Unsupported


def unescape(raw: str) -> str:
    """XML character data to text: the five entities and character references."""
    if "&" not in raw:
        return raw
    text, count = _ENTITY.subn(_entity, raw)
    if count != raw.count("&"):
        raise _Unsupported  # a bare "&" or another entity: not well-formed here
    return text


def complete(body: bytes, answer: Answer) -> bool:
    """Whether `body` is, at a glance, a whole answer of this kind: its root element
    first and its end tag last. A body cut short in transit or an <Error> document
    returned with status 200 is not."""
    head = _HEAD_BYTES.match(body)
    if head is None or head.group(1) != answer.root.encode():
        return False
    return body.rstrip().endswith(f"</{answer.root}>".encode())


def parse(body: bytes, answer: Answer, stamp: Callable[[str], datetime]) -> dict[str, Any] | None:
    """The fields of `answer` in `body`, as botocore's parser gives them (lists only when
    they have members, timestamps through `stamp`); None outside the subset."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = _HEAD.match(text)
    if head is None or head.group(1) != answer.root:
        return None
    end = text.rstrip()
    closing = f"</{answer.root}>"
    if not end.endswith(closing):
        return None
    inner = text[head.end() : len(end) - len(closing)]
    if "/>" in inner:
        # An empty element written `<KeyMarker/>` (moto, some S3-compatible stores) is
        # `<KeyMarker></KeyMarker>`; any other "/>" stays and is refused below.
        inner = _EMPTY.sub(r"<\1></\1>", inner)
    # Comments, CDATA, DOCTYPE, processing instructions, empty-element tags with
    # attributes, and a raw CR (which a real parser turns into LF): left to botocore's.
    if "<!" in inner or "<?" in inner or "/>" in inner or "\r" in inner:
        return None
    if _ATTRIBUTE.search(inner):
        return None
    try:
        return _read(inner, answer, stamp)
    except (_Unsupported, ValueError):
        return None


def _read(inner: str, answer: Answer, stamp: Callable[[str], datetime]) -> dict[str, Any]:
    def timestamp(raw: str) -> datetime:
        return stamp(unescape(raw))

    def boolean(raw: str) -> bool:
        return raw == "true"

    kinds: dict[str, Callable[[str], Any]] = {
        STR: unescape,
        INT: int,
        BOOL: boolean,
        TIME: timestamp,
    }
    # [text before the first item, tag, text from it to the next item's start, tag, ...]
    parts = answer.split_re.split(inner)
    items = len(parts) // 2
    if len(answer.start_re.findall(inner)) != items:
        raise _Unsupported  # an item's start tag not split on (`<Contents >`)
    outside = [parts[0]]
    lists: dict[str, list[dict[str, Any]]] = {}
    readers = {
        tag: (name, f"</{tag}>", answer.field_re[tag], [(f, kinds[k]) for f, k in wanted.items()])
        for tag, (name, wanted) in answer.items.items()
    }
    for at in range(1, len(parts), 2):
        name, end, fields, converters = readers[parts[at]]
        content, closed, after = parts[at + 1].partition(end)
        if not closed:
            raise _Unsupported
        outside.append(after)
        pairs = fields.findall(content)
        entry = dict(pairs)
        if len(entry) != len(pairs):
            raise _Unsupported  # a field twice: not an answer of the known shape
        for key, convert in converters:
            if key in entry:
                entry[key] = convert(entry[key])
        lists.setdefault(name, []).append(entry)
    parsed: dict[str, Any] = {}
    for key, raw in _FIELD.findall("".join(outside)):
        kind = answer.top.get(key)
        if kind is not None:
            if key in parsed:
                raise _Unsupported
            parsed[key] = kinds[kind](raw)
    parsed.update(lists)
    return parsed


# -- DeleteObjects request body ----------------------------------------------------------

_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _cdata(text: str) -> str:
    # As ElementTree writes text, then botocore's escape of line breaks for DeleteObjects.
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#xD;")
    if "\n" in text:
        text = text.replace("\n", "&#xA;")
    return text


def delete_body(delete: Any) -> bytes | None:
    """The XML body botocore would send for DeleteObjects' `Delete` parameter, byte for
    byte; None unless it holds only objects with a Key and maybe a VersionId (both
    non-empty strings) and maybe a boolean Quiet: anything else is botocore's to check."""
    if not isinstance(delete, dict) or not set(delete) <= {"Objects", "Quiet"}:
        return None
    objects, quiet = delete.get("Objects"), delete.get("Quiet")
    if not isinstance(objects, list) or not objects or not isinstance(quiet, bool | None):
        return None
    parts = [f'<Delete xmlns="{_XMLNS}">']
    for obj in objects:
        if not isinstance(obj, dict):
            return None
        key = obj.get("Key")
        if not isinstance(key, str) or not key:
            return None
        if len(obj) == 1:
            parts.append(f"<Object><Key>{_cdata(key)}</Key></Object>")
            continue
        version = obj.get("VersionId")
        if len(obj) != 2 or not isinstance(version, str) or not version:
            return None
        # botocore writes the members in the order of the caller's dict.
        first, second = ("Key", "VersionId") if next(iter(obj)) == "Key" else ("VersionId", "Key")
        parts.append(
            f"<Object><{first}>{_cdata(obj[first])}</{first}>"
            f"<{second}>{_cdata(obj[second])}</{second}></Object>"
        )
    if quiet is not None:
        tag = f"<Quiet>{'true' if quiet else 'false'}</Quiet>"
        if next(iter(delete)) == "Quiet":
            parts.insert(1, tag)
        else:
            parts.append(tag)
    parts.append("</Delete>")
    return "".join(parts).encode("utf-8", "xmlcharrefreplace")
