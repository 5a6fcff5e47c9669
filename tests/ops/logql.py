"""A parser and evaluator for the LogQL the shipped dashboards and rules use.

It understands stream selectors, line filters, `| json`, `| logfmt`, label filters,
`| unwrap`, `| line_format`, range aggregations over `[range]`, vector aggregations
with `by`/`without`, and comparisons with numbers. Anything else is a ParseError,
so a query this module cannot read fails the tests instead of being waved through.

`evaluate` runs a log pipeline over real JSON log lines the way Loki would after
`| json` (nested objects flattened with `_`, arrays dropped, booleans and numbers
as their JSON text), which lets the tests prove each filter matches real lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RANGE_FUNCTIONS = {
    "count_over_time",
    "rate",
    "bytes_over_time",
    "bytes_rate",
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
    "stddev_over_time",
}
UNWRAP_FUNCTIONS = RANGE_FUNCTIONS - {"count_over_time", "rate", "bytes_over_time", "bytes_rate"}
VECTOR_AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar"}
COMPARISONS = {"==", "!=", ">", ">=", "<", "<="}
ARITHMETIC = {"+", "-", "*", "/"}
LABEL_OPS = {"=", "==", "!=", "=~", "!~", ">", ">=", "<", "<="}
SELECTOR_OPS = {"=", "!=", "=~", "!~"}
RANGE = re.compile(r"^(\$__(auto|interval|range|rate_interval)|(\d+(ms|s|m|h|d|w|y))+)$")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|[|{}(),=<>+\-*/])
    """,
    re.VERBOSE,
)


class ParseError(ValueError):
    """The query is not LogQL this module understands."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: kind is line_filter, parser, label_filter, unwrap or line_format."""

    kind: str
    name: str = ""  # parser name, label or unwrapped field
    op: str = ""
    value: str = ""


@dataclass
class LogExpr:
    selector: list[Matcher]
    stages: list[Stage]
    range: str = ""
    function: str = ""  # the range aggregation around it, if any


@dataclass
class Query:
    """Every log expression of a query and the labels its aggregations group by."""

    text: str
    logs: list[LogExpr] = field(default_factory=list)
    grouping: list[str] = field(default_factory=list)
    without: bool = False


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ParseError(f"cannot read {text[pos : pos + 20]!r} in {text!r}")
        pos = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, match.group()))
    return tokens


def _unquote(token: Token) -> str:
    if token.kind != "string":
        raise ParseError(f"expected a string, got {token.text!r}")
    if token.text.startswith("`"):
        return token.text[1:-1]
    value = json.loads(token.text)
    assert isinstance(value, str)
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.query = Query(text)

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        token = self.peek()
        if token is None:
            raise ParseError(f"unexpected end of {self.text!r}")
        if (text is not None and token.text != text) or (kind is not None and token.kind != kind):
            raise ParseError(f"expected {text or kind!r}, got {token.text!r} in {self.text!r}")
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def parse(self) -> Query:
        self.expr()
        if self.peek() is not None:
            raise ParseError(f"trailing {self.peek()!r} in {self.text!r}")
        return self.query

    def expr(self) -> None:
        self.operand()
        while (token := self.peek()) is not None and token.text in COMPARISONS | ARITHMETIC:
            self.take()
            if self.at("bool"):
                self.take()
            self.operand()

    def operand(self) -> None:
        token = self.peek()
        if token is None:
            raise ParseError(f"unexpected end of {self.text!r}")
        if token.kind == "number":
            self.take()
        elif token.text == "(":
            self.take("(")
            self.expr()
            self.take(")")
        elif token.text == "{":
            self.query.logs.append(self.log_expr())
        elif token.text in VECTOR_AGGREGATIONS:
            self.vector_aggregation()
        elif token.text in RANGE_FUNCTIONS:
            self.range_aggregation()
        else:
            raise ParseError(f"unexpected {token.text!r} in {self.text!r}")

    def grouping(self) -> None:
        word = self.take(kind="ident").text
        if word not in ("by", "without"):
            raise ParseError(f"expected by/without, got {word!r}")
        self.query.without = self.query.without or word == "without"
        self.take("(")
        while not self.at(")"):
            self.query.grouping.append(self.take(kind="ident").text)
            if not self.at(")"):
                self.take(",")
        self.take(")")

    def _maybe_grouping(self) -> None:
        token = self.peek()
        if token is not None and token.text in ("by", "without"):
            self.grouping()

    def vector_aggregation(self) -> None:
        self.take()
        self._maybe_grouping()
        self.take("(")
        self.expr()
        self.take(")")
        self._maybe_grouping()

    def range_aggregation(self) -> None:
        function = self.take().text
        self.take("(")
        log = self.log_expr()
        token = self.take(kind="range")
        window = token.text[1:-1]
        if not RANGE.match(window):
            raise ParseError(f"bad range {token.text!r} in {self.text!r}")
        log.range, log.function = window, function
        unwraps = [s for s in log.stages if s.kind == "unwrap"]
        if (function in UNWRAP_FUNCTIONS) != bool(unwraps):
            raise ParseError(f"{function} and unwrap do not agree in {self.text!r}")
        self.take(")")
        self._maybe_grouping()
        self.query.logs.append(log)

    def log_expr(self) -> LogExpr:
        self.take("{")
        selector: list[Matcher] = []
        while not self.at("}"):
            label = self.take(kind="ident").text
            op = self.take(kind="op").text
            if op not in SELECTOR_OPS:
                raise ParseError(f"bad selector operator {op!r}")
            selector.append(Matcher(label, op, _unquote(self.take(kind="string"))))
            if not self.at("}"):
                self.take(",")
        self.take("}")
        if not selector:
            raise ParseError("empty stream selector")
        return LogExpr(selector, self.stages())

    def stages(self) -> list[Stage]:
        stages: list[Stage] = []
        while (token := self.peek()) is not None:
            if token.text in ("|=", "|~", "!=", "!~"):
                self.take()
                stages.append(Stage("line_filter", op=token.text, value=_unquote(self.take())))
            elif token.text == "|":
                self.take()
                stages.append(self.stage())
            else:
                break
        return stages

    def stage(self) -> Stage:
        word = self.take(kind="ident").text
        if word in ("json", "logfmt"):
            nxt = self.peek()
            if nxt is not None and nxt.kind == "ident":
                raise ParseError(f"parser parameters are not supported in {self.text!r}")
            return Stage("parser", name=word)
        if word == "unwrap":
            return Stage("unwrap", name=self.take(kind="ident").text)
        if word == "line_format":
            return Stage("line_format", value=_unquote(self.take()))
        op = self.take(kind="op").text
        if op not in LABEL_OPS:
            raise ParseError(f"bad label filter operator {op!r} in {self.text!r}")
        value = self.take()
        text = value.text if value.kind == "number" else _unquote(value)
        return Stage("label_filter", name=word, op=op, value=text)


def parse(text: str) -> Query:
    """Parse one LogQL query; raises ParseError on anything outside the supported subset."""
    return _Parser(text).parse()


def loki_labels(line: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The labels `| json` extracts from one JSON log line."""
    labels: dict[str, str] = {}
    for key, value in line.items():
        name = re.sub(r"[^A-Za-z0-9_]", "_", prefix + key)
        if isinstance(value, dict):
            labels.update(loki_labels(value, name + "_"))
        elif isinstance(value, list) or value is None:
            continue
        elif isinstance(value, str):
            labels[name] = value
        else:
            labels[name] = json.dumps(value)
    return labels


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _passes(stage: Stage, labels: Mapping[str, str]) -> bool:
    value = labels.get(stage.name, "")
    if stage.op in ("=", "=="):
        return value == stage.value
    if stage.op == "!=":
        return value != stage.value
    if stage.op == "=~":
        return re.fullmatch(stage.value, value) is not None
    if stage.op == "!~":
        return re.fullmatch(stage.value, value) is None
    have, want = _number(value), _number(stage.value)
    if have is None or want is None:
        return False
    return {">": have > want, ">=": have >= want, "<": have < want, "<=": have <= want}[stage.op]


@dataclass
class Evaluation:
    """The lines (as labels) a log expression keeps, and what went wrong on the way."""

    labels: list[dict[str, str]]
    problems: list[str]


def evaluate(log: LogExpr, lines: Iterable[Mapping[str, Any]]) -> Evaluation:
    """Run the pipeline of `log` over JSON lines whose stream already matched its selector.

    An `unwrap` of a field that a kept line lacks or holds as a non-number is a problem:
    Loki would mark it with `__error__` and the panel would silently lose it.
    """
    problems: list[str] = []
    kept: list[dict[str, str]] = []
    for line in lines:
        raw = json.dumps(line)
        labels: dict[str, str] | None = {}
        for stage in log.stages:
            assert labels is not None
            if stage.kind == "line_filter":
                found = (
                    stage.value in raw if stage.op in ("|=", "!=") else re.search(stage.value, raw)
                )
                if bool(found) != (stage.op in ("|=", "|~")):
                    labels = None
            elif stage.kind == "parser":
                if stage.name != "json":
                    raise ParseError("only | json is evaluated")
                labels.update(loki_labels(line))
            elif stage.kind == "label_filter":
                if not _passes(stage, labels):
                    labels = None
            elif stage.kind == "unwrap" and _number(labels.get(stage.name, "")) is None:
                problems.append(f"unwrap {stage.name}: {labels.get(stage.name)!r} in {raw[:160]}")
                labels["__error__"] = "SampleExtractionErr"
            if labels is None:
                break
        if labels is not None:
            kept.append(labels)
    return Evaluation(kept, problems)


def alternatives(stage: Stage) -> list[str]:
    """The literals of a regex that is a plain alternation (`partial|capped`), else []."""
    if stage.op in ("=~", "!~") and re.fullmatch(r"[\w.-]+(\|[\w.-]+)*", stage.value):
        return stage.value.split("|")
    return []
