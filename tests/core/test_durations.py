"""Durations (docs/getting-started.md#usage): an integer and one unit; a bare integer means days."""

import pytest

from cleanup.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("90m", 5400),
        ("36h", 129600),
        ("7d", 604800),
        ("2w", 1209600),
        ("7", 604800),
        (3, 259200),
    ],
)
def test_parse_duration_valid_spelling_gives_seconds(text: object, seconds: int) -> None:
    """Each unit multiplies as documented, and bare integers (text or TOML) are days."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["0", "0d", "-1d", "", "  ", "7x", "7dd", "d", "1.5d", "7 d", True, 1.5, None, [], -3]
)
def test_parse_duration_invalid_value_raises(text: object) -> None:
    """Zero, negative, empty, fractional, unknown units and wrong types are errors."""
    with pytest.raises(ValueError, match=r"."):
        parse_duration(text)


def test_parse_duration_absurdly_long_raises() -> None:
    """A retention longer than a century cannot produce a valid cutoff, so it is refused."""
    with pytest.raises(ValueError, match="longer than"):
        parse_duration("99999999d")


@pytest.mark.parametrize(
    ("seconds", "text"), [(604800, "1w"), (86400, "1d"), (5400, "90m"), (61, "61s")]
)
def test_format_duration_exact_value_uses_largest_unit(seconds: int, text: str) -> None:
    """Durations print in the largest unit that divides them exactly, and parse back."""
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
