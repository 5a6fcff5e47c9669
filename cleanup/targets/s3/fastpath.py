"""botocore, hooked so that the S3 target's per-key XML takes cleanup.targets.s3.wire.

Everything else stays botocore's: credentials (IRSA and every other source), region,
endpoint rules, signing, checksums, retries, error answers. Three hooks, each of which
falls back to botocore's own code for anything it does not recognise:

- the response parser of the session: the success answers of ListObjectsV2,
  ListObjectVersions and DeleteObjects are read by wire.parse (per object only Key,
  VersionId, IsLatest, LastModified and Size; see wire.py), any other answer, and any
  such answer outside wire's XML subset, by botocore's parser;
- S3's check for an error document returned with status 200 (`_handle_200_error`, a
  second whole parse of each answer): for those three operations a body that opens with
  the expected root element and ends with its end tag is known not to be one; any other
  body still goes through botocore's check, which also retries a body cut short;
- DeleteObjects' body: built by wire.delete_body from the objects given, and put in
  place of the one botocore serialized (from a one-object stand-in, so that its
  validator and serializer do not walk 1000 objects) before botocore computes the
  checksum, Content-MD5 and signature over it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore import handlers
from botocore.parsers import ResponseParser, ResponseParserFactory, RestXMLParser
from botocore.session import Session

from cleanup.targets.s3 import wire

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Where the prebuilt DeleteObjects body waits, in botocore's per-request context, between
# the parameter build and the request.
_BODY = "cleanup_delete_objects_body"
# What botocore validates and serializes instead of the real objects.
_STAND_IN = [{"Key": "stand-in"}]


class _Parser(RestXMLParser):
    """botocore's REST-XML parser, with wire.parse for the answers it knows."""

    def __init__(self, stamp: Callable[[str], datetime]) -> None:
        super().__init__(timestamp_parser=stamp)
        self._stamp = stamp

    def _parse_payload(
        self, response: Any, shape: Any, member_shapes: Any, final_parsed: Any
    ) -> None:
        answer = wire.ANSWERS.get(shape.name) if shape is not None else None
        if answer is not None and isinstance(response.get("body"), bytes):
            parsed = wire.parse(response["body"], answer, self._stamp)
            if parsed is not None:
                final_parsed.update(parsed)
                return
        super()._parse_payload(response, shape, member_shapes, final_parsed)  # type: ignore[misc]


class _Parsers(ResponseParserFactory):
    def __init__(self, stamp: Callable[[str], datetime]) -> None:
        super().__init__()
        self._stamp = stamp
        self.set_parser_defaults(timestamp_parser=stamp)  # for other protocols (STS...)

    def create_parser(self, protocol_name: str) -> ResponseParser:
        if protocol_name == "rest-xml":
            return _Parser(self._stamp)
        return super().create_parser(protocol_name)


def install_parser(session: Session, stamp: Callable[[str], datetime]) -> None:
    """Before the client is created: the session's parsers, timestamps through `stamp`."""
    session.register_component("response_parser_factory", _Parsers(stamp))


def _error_in_200(original: Callable[..., None]) -> Callable[..., None]:
    def check(operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
        shape = operation_model.output_shape
        answer = wire.ANSWERS.get(shape.name) if shape is not None else None
        body = response_dict.get("body") if response_dict else None
        if (
            answer is not None
            and response_dict.get("status_code") == 200
            and isinstance(body, bytes)
            and wire.complete(body, answer)
        ):
            return
        original(operation_model=operation_model, response_dict=response_dict, **kwargs)

    return check


def _take_objects(params: Any, context: Any, **_: Any) -> None:
    body = wire.delete_body(params.get("Delete"))
    if body is not None:
        context[_BODY] = body
        params["Delete"] = {"Objects": list(_STAND_IN)}


def _put_body(params: Any, context: Any, **_: Any) -> None:
    body = context.get(_BODY)
    if body is not None:
        params["body"] = body


def install_hooks(client: S3Client) -> None:
    """After the client is created: its 200-error check and DeleteObjects body."""
    events = client.meta.events
    original = getattr(handlers, "_handle_200_error", None)
    if original is not None:  # a botocore without it keeps whatever check it has
        events.unregister("before-parse.s3.*", original)
        events.register_first("before-parse.s3.*", _error_in_200(original))
    events.register("before-parameter-build.s3.DeleteObjects", _take_objects)
    # First, so that botocore's own before-call handlers (the escape of line breaks in
    # the XML among them) see the real body.
    events.register_first("before-call.s3.DeleteObjects", _put_body)
