"""Secret redaction for every line the process prints.

Whatever the source (a DSN put where a name was expected, a driver's error
that echoes its conninfo, an endpoint URL with credentials), a value that looks
like a URL with credentials or a `password=` pair never reaches the output.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"

# scheme://user:password@host or scheme://token@host: everything between `//` and `@`.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@")
# libpq conninfo and similar key=value strings: password=..., quoted or not.
_PASSWORD_PAIR = re.compile(
    r"(?i)\b(\w*(?:password|passwd|secret)\w*\s*=\s*|pwd\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&]+)"
)


def redact(text: str) -> str:
    """`text` with URL credentials and password pairs replaced by a marker."""
    if "@" not in text and "=" not in text:
        return text
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    return _PASSWORD_PAIR.sub(rf"\1{REDACTED}", text)


def redact_value(value: Any) -> Any:
    """Redact every string inside a JSON-like value (str, list, tuple, dict)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value
