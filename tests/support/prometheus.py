"""Reading what a service serves at ``/metrics`` (the Prometheus text format), and the
metric names a PromQL expression refers to (for the dashboard and the alert rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """Every sample; a line that is neither a comment nor a sample fails the test."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name, _, labels, value = match.groups()
        samples.append(Sample(name, dict(_LABEL.findall(labels or "")), float(value)))
    return samples


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels`` (0: none)."""
    return sum(
        s.value
        for s in parse(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def names(text: str) -> set[str]:
    """The names of the samples served (histograms as their ``_bucket``, ``_sum`` and
    ``_count`` series)."""
    return {s.name for s in parse(text)}


_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan"}
)


def metric_names(expression: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are neither functions
    nor keywords, once strings, label matchers, ranges, grouping clauses and Grafana's
    variables are taken out."""
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", expression)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.groups()
        if call or word.lower() in _KEYWORDS:
            continue
        found.add(word)
    return found
