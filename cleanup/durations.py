"""Retention durations: `90m`, `36h`, `7d`, `2w`; a bare integer means days."""

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A cutoff must stay a representable datetime; a century is longer than any sane retention.
MAX_SECONDS = 36500 * 86400

_PATTERN = re.compile(r"([0-9]+)([a-zA-Z]*)")


def parse_duration(value: object) -> int:
    """Return the duration in whole seconds, or raise ValueError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a duration such as '7d' or an integer of days, got {value!r}")
    if isinstance(value, int):
        seconds = value * UNITS["d"]
    else:
        text = value.strip()
        match = _PATTERN.fullmatch(text)
        if not text:
            raise ValueError("empty duration")
        if text.startswith("-"):
            raise ValueError(f"duration must be positive, got {value!r}")
        if match is None:
            raise ValueError(f"not a duration (use an integer and one of s, m, h, d, w): {value!r}")
        number, unit = match.groups()
        if unit and unit not in UNITS:
            raise ValueError(f"unknown duration unit {unit!r} in {value!r} (use s, m, h, d, w)")
        seconds = int(number) * UNITS[unit or "d"]
    if seconds <= 0:
        raise ValueError(f"duration must be greater than zero, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {value!r} is longer than 36500 days")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling, e.g. 604800 -> '1w', 5400 -> '90m'."""
    for unit in ("w", "d", "h", "m"):
        size = UNITS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
