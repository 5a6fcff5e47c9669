"""The one description of the configuration, and what is derived from it.

Every setting is declared once, as a field of a frozen dataclass whose metadata
holds its `Key`: type, default, range, choices, environment variable, whether
it is a secret, and a one-line doc. From those declarations come

- `read_table`: validation of one TOML table that reports every problem, each
  naming the file, the entry, the key and the value;
- the frozen, typed settings objects themselves;
- `view`: the `--check-config` view of a settings object, secrets redacted;
- `json_schema`: the JSON schema of the chart's `config` value, and
- `reference_rows`: the rows of the configuration reference page
  (both written by scripts/generate.sh, never by hand).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cleanup.durations import format_duration, parse_duration

KEY = "cleanup.key"
REQUIRED: Any = dataclasses.MISSING
STRING, BOOLEAN, INTEGER, DURATION, STRINGS, CHOICE = (
    "string",
    "boolean",
    "integer",
    "duration",
    "list of strings",
    "choice",
)
DURATION_PATTERN = r"^[1-9][0-9]*[smhdw]?$"
DURATION_DOC = (
    "an integer and one unit s, m, h, d, w (`90m`, `36h`, `7d`); a bare integer means days"
)
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class Key:
    """What one setting is: everything the validator, the schema and the docs need."""

    type: str
    doc: str
    default: Any = REQUIRED
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole value must match
    pattern_doc: str = ""  # what the pattern means, for the error message
    non_empty: bool = False
    env: str | None = None  # the environment variable that sets it, where one does
    secret: bool = False  # never printed; redacted in --check-config
    in_file: bool = True  # False: comes only from the environment (secrets)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _field(key: Key) -> Any:
    metadata = {KEY: key}
    if key.required:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=key.default, metadata=metadata, repr=not key.secret)


def string(doc: str, default: Any = REQUIRED, **options: Any) -> Any:
    return _field(Key(STRING, doc, default, **options))


def boolean(doc: str, default: bool, **options: Any) -> Any:
    return _field(Key(BOOLEAN, doc, default, **options))


def integer(doc: str, default: Any = REQUIRED, **options: Any) -> Any:
    return _field(Key(INTEGER, doc, default, **options))


def duration(doc: str, default: Any = REQUIRED, **options: Any) -> Any:
    """Stored in whole seconds; None as default means "the global default applies"."""
    return _field(Key(DURATION, doc, default, **options))


def strings(doc: str, default: tuple[str, ...] = (), **options: Any) -> Any:
    return _field(Key(STRINGS, doc, default, **options))


def choice(doc: str, choices: tuple[str, ...], default: Any = REQUIRED, **options: Any) -> Any:
    return _field(Key(CHOICE, doc, default, choices=choices, **options))


def keys(cls: type[Any]) -> Iterator[tuple[str, Key]]:
    """The declared settings of a settings class, in declaration order."""
    for item in dataclasses.fields(cls):
        key = item.metadata.get(KEY)
        if isinstance(key, Key):
            yield item.name, key


def file_keys(cls: type[Any]) -> Iterator[tuple[str, Key]]:
    return ((name, key) for name, key in keys(cls) if key.in_file)


@dataclass(frozen=True)
class ConfigWarning:
    """A valid configuration that is almost certainly not what the operator meant."""

    code: str
    key: str
    message: str
    target: str | None = None
    kind: str | None = None


class Problems:
    """Every problem (and warning) found in one pass, so a config is fixed in one round trip."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.warnings: list[ConfigWarning] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def warn(self, warning: ConfigWarning) -> None:
        self.warnings.append(warning)


@dataclass(frozen=True)
class Kind:
    """One kind of target as the configuration sees it; registered in cleanup.targets.

    `settings` is its frozen settings class (the declared keys); `check` runs the
    rules that span keys and normalises values (it may add problems and warnings);
    `quick` reads the quick targets of the kind from the environment mapping.
    """

    name: str
    settings: type[Any]
    check: Callable[[dict[str, Any], str, Problems], None]
    quick: Callable[[Mapping[str, str]], list[tuple[str, dict[str, Any]]]]
    # Fields filled from the environment mapping, not the file (secrets).
    from_environment: Callable[[dict[str, Any], Mapping[str, str]], dict[str, Any]] = (
        lambda _values, _environ: {}
    )


def _range(key: Key) -> str:
    if key.minimum is not None and key.maximum is not None:
        return f"between {key.minimum} and {key.maximum}"
    return f"at least {key.minimum}"


def check_value(key: Key, value: Any) -> tuple[Any, str | None]:
    """A TOML value converted to its settings type, or the reason it is refused."""
    if key.type == STRING:
        if not isinstance(value, str):
            return None, "expected a string"
        if key.non_empty and not value:
            return None, "must not be empty"
        if key.pattern and value and not re.fullmatch(key.pattern, value):
            return None, key.pattern_doc or f"must match {key.pattern}"
        return value, None
    if key.type == BOOLEAN:
        return (value, None) if isinstance(value, bool) else (None, "expected true or false")
    if key.type == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, "expected an integer"
        low, high = key.minimum, key.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            return None, f"must be {_range(key)}"
        return value, None
    if key.type == DURATION:
        try:
            return parse_duration(value), None
        except ValueError as exc:
            return None, str(exc)
    if key.type == STRINGS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, "expected a list of strings"
        return tuple(value), None
    if value not in key.choices:
        return None, "expected " + " or ".join(repr(c) for c in key.choices)
    return value, None


def read_table(
    cls: type[Any], data: Mapping[str, Any], where: str, problems: Problems
) -> dict[str, Any]:
    """The file keys of `cls` read from one TOML table; problems recorded, never raised.

    A key left out, or refused, takes its default (a required one is reported);
    keys the table has that `cls` does not declare are reported as unknown.
    """
    values: dict[str, Any] = {}
    declared = dict(file_keys(cls))
    for name, key in declared.items():
        if name not in data:
            if key.required:
                problems.add(f"{where}: {name} is required")
            else:
                values[name] = key.default
            continue
        value, why = check_value(key, data[name])
        if why is not None:
            problems.add(f"{where}: {name} = {data[name]!r}: {why}")
            value = None if key.required else key.default
        values[name] = value
    for name in sorted(set(data) - set(declared)):
        problems.add(f"{where}: unknown key {name!r}")
    return values


def parse_text(key: Key, text: str) -> tuple[Any, str | None]:
    """A value typed as text (environment, command line) converted to its settings type."""
    value = text.strip()
    if key.type == BOOLEAN:
        if value.lower() in _TRUE:
            return True, None
        if value.lower() in _FALSE:
            return False, None
        return None, "expected one of true/false/1/0/yes/no"
    if key.type == INTEGER:
        if not value.isdigit():
            return None, f"expected a whole number >= {key.minimum or 0}"
        return check_value(key, int(value))
    if key.type == STRINGS:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if key.choices:
            # A subset of the choices (CLEANUP_ONLY=s3,volumes), answered in their order.
            wanted = [p.lower() for p in parts]
            bad = [p for p in wanted if p not in key.choices]
            if bad or not wanted:
                return None, f"unknown value(s) {bad}; expected {', '.join(key.choices)}"
            return tuple(c for c in key.choices if c in wanted), None
        return tuple(parts), None
    if key.type == CHOICE:
        # Case-insensitive, answered in the canonical spelling (INFO, json).
        found = next((c for c in key.choices if c.lower() == value.lower()), None)
        if found is None:
            return None, f"expected one of {', '.join(key.choices)}"
        return found, None
    return check_value(key, value if key.type == DURATION else text)


# -- derived views -------------------------------------------------------------------------


def shown(key: Key, value: Any, redact: Callable[[str], str]) -> Any:
    """One value as --check-config prints it."""
    if key.secret:
        return "<redacted>" if value else None
    if key.type == DURATION and isinstance(value, int):
        return format_duration(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):
        return redact(value)
    return value


def view(settings: Any, redact: Callable[[str], str]) -> dict[str, Any]:
    """Every declared setting of one settings object, as --check-config prints it."""
    return {name: shown(key, getattr(settings, name), redact) for name, key in keys(type(settings))}


def _schema_of(key: Key) -> dict[str, Any]:
    if key.type == DURATION:
        schema: dict[str, Any] = {"$ref": "#/definitions/duration"}
        if key.default is None:
            return {"description": key.doc, "oneOf": [schema, {"type": "null"}]}
        return {"description": key.doc, **schema}
    schema = {"description": key.doc}
    if key.type == STRING:
        schema["type"] = "string"
        if key.non_empty:
            schema["minLength"] = 1
        if key.pattern:
            schema["pattern"] = key.pattern if key.pattern.startswith("^") else f"^{key.pattern}$"
    elif key.type == BOOLEAN:
        schema["type"] = "boolean"
    elif key.type == INTEGER:
        schema["type"] = "integer"
        if key.minimum is not None:
            schema["minimum"] = key.minimum
        if key.maximum is not None:
            schema["maximum"] = key.maximum
    elif key.type == STRINGS:
        schema |= {"type": "array", "items": {"type": "string"}}
    else:
        schema["enum"] = list(key.choices)
    return schema


def json_schema(cls: type[Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON schema (draft 7) of one TOML table of `cls`."""
    names = [name for name, key in file_keys(cls) if key.required] + list(required)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(dict.fromkeys(names)),
        "properties": {name: _schema_of(key) for name, key in file_keys(cls)},
    }


def duration_schema() -> dict[str, Any]:
    return {
        "description": f"Duration: {DURATION_DOC}.",
        "oneOf": [
            {"type": "string", "pattern": DURATION_PATTERN},
            {"type": "integer", "minimum": 1},
        ],
    }


def default_text(key: Key) -> str:
    """The default as the reference page shows it."""
    if key.required:
        return "required"
    value = key.default
    if value is None:
        return "none"
    if key.type == DURATION and isinstance(value, int):
        return f'`"{format_duration(value)}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def type_text(key: Key) -> str:
    if key.type == INTEGER and key.minimum is not None:
        return f"integer, {_range(key)}"
    if key.type == CHOICE:
        return " or ".join(f'`"{c}"`' for c in key.choices)
    return key.type


def reference_rows(cls: type[Any]) -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) per file key of `cls`, for the reference page."""
    return [
        (
            name,
            type_text(key),
            default_text(key),
            key.doc + (f" Env: `{key.env}`." if key.env else ""),
        )
        for name, key in file_keys(cls)
    ]


def env_entry(cls: type[Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The keys of `cls` that the environment sets (empty counts as unset), as TOML-like
    values: comma lists become lists, the rest stays text for `read_table` to check."""
    entry: dict[str, Any] = {}
    for name, key in keys(cls):
        text = environ.get(key.env) if key.env else None
        if text:
            entry[name] = (
                [p.strip() for p in text.split(",") if p.strip()] if key.type == STRINGS else text
            )
    return entry
