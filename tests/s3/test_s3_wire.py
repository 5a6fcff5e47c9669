"""The S3 target's own XML (cleanup.targets.s3.wire, hooked into botocore by fastpath):
every answer it reads gives what botocore's parser gives, every DeleteObjects body it
writes is the one botocore writes, and whatever it does not recognise is botocore's.

Answers are built here as S3 writes them; test_s3_wire_http takes them from a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import botocore.session
import pytest
from botocore.handlers import escape_xml_payload
from botocore.parsers import ResponseParserError, RestXMLParser
from botocore.serialize import create_serializer

from cleanup.targets.s3 import fastpath, wire
from cleanup.targets.s3.client import _timestamp

_S3 = botocore.session.get_session().get_service_model("s3")

# Keys that S3 allows and an XML reader can get wrong.
AWKWARD = [
    "plain",
    "a&b",
    "&amp;",
    "<Key>x</Key>",
    'say "hi"',
    "it's",
    "]]>",
    "space in it",
    " leading",
    "trailing ",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\n",
    "ünïcödé/日本語/😀",
    "a//b/./../c",
    "%2F%20not-decoded",
    "k" * 1024,
]
# moto writes a carriage return raw in its XML (S3 writes `&#13;`), which every XML reader
# turns into a line feed: those keys are left out where moto answers.
ON_MOTO = [k for k in AWKWARD if "\r" not in k]


def _text(value: str) -> str:
    """Character data as S3 escapes it: the five entities, line breaks as references."""
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
        .replace("\r", "&#13;")
        .replace("\n", "&#10;")
    )


def _fields(fields: Mapping[str, str]) -> str:
    return "".join(f"<{k}>{_text(v)}</{k}>" for k, v in fields.items())


def _element(tag: str, fields: Mapping[str, str]) -> str:
    return f"<{tag}>{_fields(fields)}</{tag}>"


def _document(root: str, parts: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + "".join(parts) + f"</{root}>"
    ).encode()


def _contents(key: str, stamp: str = "2024-05-01T12:00:00.000Z", size: int = 3) -> str:
    return _element(
        "Contents",
        {
            "Key": key,
            "LastModified": stamp,
            "ETag": '"900150983cd24fb0d6963f7d28e17f72"',
            "Size": str(size),
            "StorageClass": "STANDARD",
        },
    )


def _listing(keys: list[str]) -> bytes:
    head = [
        _fields(
            {
                "Name": "media",
                "Prefix": "out/&<>/",
                "ContinuationToken": "tok+/=",
                "NextContinuationToken": "next&tok",
                "KeyCount": str(len(keys)),
                "MaxKeys": "1000",
                "Delimiter": "/",
                "IsTruncated": "true",
            },
        )
    ]
    return _document(
        "ListBucketResult",
        head
        + [_contents(k, size=i) for i, k in enumerate(keys)]
        + [_element("CommonPrefixes", {"Prefix": "out/&sub/"})],
    )


def _versions() -> bytes:
    parts = [
        "<Name>media</Name><Prefix>out/</Prefix><KeyMarker>a&amp;b</KeyMarker>"
        "<VersionIdMarker></VersionIdMarker><NextKeyMarker>z&lt;</NextKeyMarker>"
        "<NextVersionIdMarker>v+/2</NextVersionIdMarker><MaxKeys>1000</MaxKeys>"
        "<IsTruncated>true</IsTruncated>"
    ]
    for i, key in enumerate(AWKWARD):
        latest = "true" if i % 2 else "false"
        parts.append(
            _element(
                "Version",
                {
                    "Key": key,
                    "VersionId": f"v{i}+/=",
                    "IsLatest": latest,
                    "LastModified": f"2024-05-{i % 28 + 1:02d}T00:00:{i % 60:02d}.123Z",
                    "ETag": '"e"',
                    "Size": str(i * 1000),
                    "StorageClass": "STANDARD",
                },
            )
        )
        if i % 3 == 0:
            parts.append(
                _element(
                    "DeleteMarker",
                    {
                        "Key": key,
                        "VersionId": "null",
                        "IsLatest": latest,
                        "LastModified": "2023-01-01T00:00:00Z",
                    },
                )
            )
    parts.append(_element("CommonPrefixes", {"Prefix": "out/p/"}))
    return _document("ListVersionsResult", parts)


def _delete_result() -> bytes:
    parts = []
    for i, key in enumerate(AWKWARD):
        if i % 2:
            parts.append(_element("Deleted", {"Key": key, "VersionId": f"v{i}"}))
        else:
            parts.append(
                _element(
                    "Error",
                    {
                        "Key": key,
                        "Code": "SlowDown",
                        "Message": "Please reduce <your> rate & retry",
                    },
                )
            )
    parts.append(
        _element(
            "Deleted",
            {"Key": "marked", "DeleteMarker": "true", "DeleteMarkerVersionId": "m1"},
        )
    )
    return _document("DeleteResult", parts)


def _botocore(operation: str, body: bytes) -> dict[str, Any]:
    shape = _S3.operation_model(operation).output_shape
    response = {"status_code": 200, "headers": {}, "body": body}
    parsed: dict[str, Any] = RestXMLParser(timestamp_parser=_timestamp).parse(response, shape)
    return parsed


def _fast(operation: str, body: bytes) -> dict[str, Any]:
    shape = _S3.operation_model(operation).output_shape
    response = {"status_code": 200, "headers": {}, "body": body}
    parsed: dict[str, Any] = fastpath._Parser(_timestamp).parse(response, shape)
    return parsed


def _project(parsed: dict[str, Any], answer: wire.Answer) -> dict[str, Any]:
    """botocore's answer cut down to the members wire reads."""
    kept: dict[str, Any] = {k: v for k, v in parsed.items() if k in answer.top}
    for name, wanted in answer.items.values():
        if name in parsed:
            kept[name] = [{k: v for k, v in e.items() if k in wanted} for e in parsed[name]]
    return kept


CASES = [
    ("ListObjectsV2", wire.LIST_OBJECTS_V2, _listing(AWKWARD)),
    ("ListObjectsV2", wire.LIST_OBJECTS_V2, _listing([])),
    ("ListObjectVersions", wire.LIST_OBJECT_VERSIONS, _versions()),
    ("DeleteObjects", wire.DELETE_OBJECTS, _delete_result()),
    (
        "ListObjectVersions",
        wire.LIST_OBJECT_VERSIONS,
        _versions().replace(b"<VersionIdMarker></VersionIdMarker>", b"<VersionIdMarker/>"),
    ),
    ("ListObjectsV2", wire.LIST_OBJECTS_V2, _listing(["a", ""]).replace(b"<Key></Key>", b"<Key/>")),
]


@pytest.mark.parametrize(("operation", "answer", "body"), CASES, ids=lambda c: str(c)[:24])
def test_wire_parse_of_s3_answer_equals_botocore_on_the_members_read(
    operation: str, answer: wire.Answer, body: bytes
) -> None:
    """wire reads a listing, a version listing and a delete result with awkward keys to
    exactly what botocore's parser gives for the members the target uses."""
    direct = wire.parse(body, answer, _timestamp)
    assert direct is not None, "the answer fell outside wire's subset"
    expected = _project(_botocore(operation, body), answer)
    assert direct == expected
    through_client_parser = _fast(operation, body)
    assert _project(through_client_parser, answer) == expected
    assert (
        through_client_parser["ResponseMetadata"] == _botocore(operation, body)["ResponseMetadata"]
    )


def test_wire_parse_of_listing_reads_keys_sizes_and_ages_exactly() -> None:
    """Keys come back unescaped byte for byte, sizes as ints, ages as aware datetimes."""
    parsed = wire.parse(_listing(AWKWARD), wire.LIST_OBJECTS_V2, _timestamp)
    assert parsed is not None
    assert [c["Key"] for c in parsed["Contents"]] == AWKWARD
    assert [c["Size"] for c in parsed["Contents"]] == list(range(len(AWKWARD)))
    assert {c["LastModified"].isoformat() for c in parsed["Contents"]} == {
        "2024-05-01T12:00:00+00:00"
    }
    assert parsed["IsTruncated"] is True
    assert parsed["NextContinuationToken"] == "next&tok"
    assert parsed["CommonPrefixes"] == [{"Prefix": "out/&sub/"}]


def _plain(value: Any) -> Any:
    """botocore's answer with the XML elements it sometimes leaves in it as their text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "tag") and hasattr(value, "text"):
        return ("element", value.tag, value.text)
    return value


_OUTSIDE = {
    "comment": lambda b: b.replace(b"<Key>plain", b"<!-- c --><Key>plain"),
    "cdata": lambda b: b.replace(b"<Key>plain</Key>", b"<Key><![CDATA[pl]]>ain</Key>"),
    "self-closing with an attribute": lambda b: b.replace(
        b"<Delimiter>/</Delimiter>", b'<Delimiter a=""/>'
    ),
    "slash-gt in text": lambda b: b.replace(b"<Key>plain", b"<Key>pl/>ain"),
    "attribute": lambda b: b.replace(b"<Key>plain", b'<Key a="1">plain'),
    "spaced start tag": lambda b: b.replace(b"<Contents>", b"<Contents >", 1),
    "raw carriage return": lambda b: b.replace(b"<Key>plain", b"<Key>pl\rain"),
    "field twice": lambda b: b.replace(b"<Key>plain</Key>", b"<Key>plain</Key><Key>x</Key>"),
    "doctype": lambda b: b.replace(b"\n<List", b"\n<!DOCTYPE x><List"),
    "latin-1 byte": lambda b: b.replace(b"<Key>plain", b"<Key>pl\xe9ain"),
    "bare ampersand": lambda b: b.replace(b"<Key>plain", b"<Key>pl&ain"),
    "unknown entity": lambda b: b.replace(b"<Key>plain", b"<Key>pl&nbsp;ain"),
    "reference to a control character": lambda b: b.replace(b"<Key>plain", b"<Key>pl&#1;ain"),
    "empty number": lambda b: b.replace(b"<MaxKeys>1000</MaxKeys>", b"<MaxKeys></MaxKeys>"),
    "no end tag": lambda b: b[: b.rindex(b"</ListBucketResult>")],
}


@pytest.mark.parametrize("variant", sorted(_OUTSIDE))
def test_wire_parse_outside_its_subset_gives_none_and_botocore_reads_it(variant: str) -> None:
    """An answer wire does not fully understand is not read by it: the client's parser
    then gives botocore's result, or botocore's error."""
    body = _OUTSIDE[variant](_listing(AWKWARD))
    assert body != _listing(AWKWARD)
    assert wire.parse(body, wire.LIST_OBJECTS_V2, _timestamp) is None
    try:
        expected = _plain(_botocore("ListObjectsV2", body))
    except (ResponseParserError, ValueError) as exc:
        with pytest.raises(type(exc)):
            _fast("ListObjectsV2", body)
    else:
        assert _plain(_fast("ListObjectsV2", body)) == expected


@pytest.mark.parametrize(
    ("body", "whole"),
    [
        (_listing(AWKWARD), True),
        (_listing(AWKWARD) + b"\n  ", True),
        (_listing(AWKWARD)[:-40], False),
        (b"", False),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
            b"<Message>We encountered an internal error.</Message></Error>",
            False,
        ),
    ],
    ids=["whole", "trailing space", "cut short", "empty", "error document"],
)
def test_wire_complete_only_for_a_whole_answer_of_its_kind(body: bytes, whole: bool) -> None:
    """Only a body that opens with the expected root and ends with its end tag skips
    botocore's check for an error inside a 200 answer."""
    assert wire.complete(body, wire.LIST_OBJECTS_V2) is whole


def botocore_delete_body(delete: dict[str, Any]) -> bytes:
    request = create_serializer("rest-xml").serialize_to_request(
        {"Bucket": "media", "Delete": delete}, _S3.operation_model("DeleteObjects")
    )
    escape_xml_payload(request)
    body: bytes = request["body"]
    return body


@pytest.mark.parametrize(
    "delete",
    [
        {"Objects": [{"Key": k} for k in AWKWARD]},
        {"Objects": [{"Key": k, "VersionId": f"v&{i}\n"} for i, k in enumerate(AWKWARD)]},
        {"Objects": [{"VersionId": "null", "Key": "a&b"}, {"Key": "c"}], "Quiet": True},
        {"Quiet": False, "Objects": [{"Key": "x"}]},
    ],
    ids=["keys", "versions", "quiet last", "quiet first"],
)
def test_wire_delete_body_is_botocores_byte_for_byte(delete: dict[str, Any]) -> None:
    """The DeleteObjects body wire builds is the one botocore serializes and escapes."""
    assert wire.delete_body(delete) == botocore_delete_body(delete)


@pytest.mark.parametrize(
    "delete",
    [
        {"Objects": []},
        {"Objects": [{"Key": ""}]},
        {"Objects": [{"Key": "a", "VersionId": ""}]},
        {"Objects": [{"Key": "a", "ETag": "e"}]},
        {"Objects": [{"Key": 1}]},
        {"Objects": [{"Key": "a"}], "Quiet": "yes"},
        {"Objects": [{"Key": "a"}], "Extra": 1},
        [{"Key": "a"}],
    ],
)
def test_wire_delete_body_of_anything_unusual_is_left_to_botocore(delete: Any) -> None:
    """Parameters outside plain keys and version ids give no body: botocore validates them."""
    assert wire.delete_body(delete) is None
