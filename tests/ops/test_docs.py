"""The documentation pages say what the tool really offers and emits, and nothing a change made false.

Options come from the real argument parser, warning codes from the code that emits
them, events, exit codes and fields from the real runs of tests/ops/conftest.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from cleanup import __version__
from cleanup.cli import build_parser
from tests.ops.conftest import Emitted

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = {page.stem: page.read_text() for page in DOCS.glob("*.md")}
# Everything a user reads: the README and every page of the site.
SITE = "\n".join(PAGES.values())
ALL = (REPO / "README.md").read_text() + "\n" + SITE
# `code` of every ConfigWarning(...) and ctx.warning(...) call in the package.
_WARNING_CODE = re.compile(r"(?:ConfigWarning|\.warning)\(\s*\"(\w+)\"")
# Phrases written before exit 3 and FailJob on it: each is false now.
STALE = (
    "set `backoffLimit: 0`",
    "capped runs exit 1",
    "A capped dry run also exits 1",
    "at least one target `failed`, `partial` or `capped`",
    "partial or capped (exit 1)",
    "path to an existing directory",
    "(a constant sentence)",
    "A dry run needs SELECT only",
)


def _section(page: str, title: str) -> str:
    """A page's text from a heading to the next heading of the same or a higher level."""
    lines = PAGES[page].splitlines()
    start = lines.index(
        next(line for line in lines if re.fullmatch(rf"#+ {re.escape(title)}", line))
    )
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    body: list[str] = []
    fenced = False
    for line in lines[start + 1 :]:
        fenced ^= line.startswith("```")
        heading = re.match(r"(#+) ", line)
        if heading and not fenced and len(heading.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def _table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("| ---")
    ]


def test_docs_usage_options_table_has_every_cli_option() -> None:
    """Each long option of the real parser (`--preflight`, `--target` included) is in Getting started's table."""
    documented = {row[0] for row in _table_rows(_section("getting-started", "Usage"))}
    options = {flag for action in build_parser()._actions for flag in action.option_strings} - {
        "-h",
        "--help",
    }
    missing = [o for o in sorted(options) if not any(f"`{o}" in cell for cell in documented)]
    assert missing == []
    assert "--preflight" in options and "--target" in options


def test_docs_exit_codes_table_has_each_code_and_3_wins_over_1() -> None:
    """The exit code table has 0, 1, 2, 3 and 130 / 143; 3 is the cap, and wins over 1."""
    rows = {
        row[0]: row[1] for row in _table_rows(_section("events-and-exit-codes", "Exit codes"))[1:]
    }
    assert set(rows) == {"0", "1", "2", "3", "130 / 143"}
    assert "`capped`" in rows["3"] and "wins over 1" in rows["3"]
    assert "none `capped`" in rows["1"]
    assert "A capped dry run exits 3 too" in _section("events-and-exit-codes", "Exit codes")
    assert "backlog" in _section("events-and-exit-codes", "Exit codes")


def test_docs_warnings_table_has_every_warning_code() -> None:
    """Every config_warning / target_warning code the package can emit has a row in Warnings."""
    codes = {
        code
        for path in (REPO / "cleanup").rglob("*.py")
        for code in _WARNING_CODE.findall(path.read_text())
    }
    assert {"max_age_unused", "s3_prefix_glob", "s3_prefix_leading_slash"} <= codes
    rows = {
        row[1].strip("`") for row in _table_rows(_section("events-and-exit-codes", "Warnings"))[1:]
    }
    assert sorted(codes - rows) == []


def test_docs_name_every_event_and_exit_code_the_runs_emit(emitted: Emitted) -> None:
    """Each event and exit code of the real runs, and each target_finished field, is on the site."""
    events = emitted.values("event")
    assert {"preflight", "config_warning"} <= events
    assert [e for e in sorted(events) if f"`{e}`" not in SITE] == []
    fields = {key for line in emitted.lines if line["event"] == "target_finished" for key in line}
    assert {"cutoff", "max_age_s", "backlog"} <= fields
    assert [f for f in sorted(fields) if f"`{f}`" not in SITE] == []
    table = _section("events-and-exit-codes", "Output")
    for field in ("cutoff", "max_age_s", "backlog", "traceback", "predicted", "problems"):
        assert f"`{field}" in table, field
    for code in set(emitted.exit_codes) - {130, 143}:
        assert f"| {code} |" in _section("events-and-exit-codes", "Exit codes"), code


def test_docs_describe_helm_test_dry_run_and_preflight() -> None:
    """Operations shows `helm test`; Dry run and Preflight say what each store can know."""
    deploy = _section("operations", "Preflight: `helm test`")
    assert "helm test media -n media --logs" in deploy
    assert "read-only" in _section("operations", "Dry-run preview")
    assert "`predicted: true`" in _section("getting-started", "Dry run: a prediction")
    for store in ("volumes", "postgres", "s3"):
        assert f"| {store} |" in _section("getting-started", "Dry run: a prediction"), store
        assert f"| {store} |" in _section("getting-started", "Preflight"), store
    assert "changing nothing" in _section("getting-started", "Preflight")
    assert "### Exit code 3" in PAGES["operations"]


def test_docs_have_no_text_the_trust_change_made_false() -> None:
    """No sentence of the old README survives, here or on the site, that exit 3, FailJob or run-time roots made false."""
    assert [phrase for phrase in STALE if phrase in ALL] == []


def test_changelog_keeps_unreleased_above_the_package_version() -> None:
    """CHANGELOG.md (Keep a Changelog): Unreleased first, then the package's version with its date."""
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    assert headings[1][0] == __version__ and headings[1][1], headings
    assert ("0.1.0", "2026-12-02") in headings
    assert '--8<-- "CHANGELOG.md"' in PAGES["changelog"]
