"""GET /v1/report parameters: normalised when valid, a 400 naming the parameter when not."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from meterline.query.cursor import CursorSigner, Page
from meterline.query.errors import BadParameter
from meterline.query.render import decimal_text, to_csv, to_json
from meterline.query.report_query import ReportQuery, parse_report_query

DATES = {"start_date": ["2026-03-01"], "end_date": ["2026-03-02"]}


def parse(**params: str | list[str]) -> ReportQuery:
    values = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    return parse_report_query({**DATES, **values}, max_limit=1000)


def test_defaults() -> None:
    query = parse()
    assert query == ReportQuery(start_date=date(2026, 3, 1), end_date=date(2026, 3, 2))
    assert query.fields() == ("day",)


def test_everything_given() -> None:
    query = parse(
        group_by="day, user,tag",
        date_part="hour",
        user_id="u1",
        model="gpt-5",
        provider="openai",
        api_key_name="prod",
        credential_type="system",
        zero_data_retention="false",
        tags=["b,a", "a"],
        tags_match="all",
        timezone="Europe/Berlin",
        limit="10",
        order_by="total_cost:desc,hour",
        format="csv",
    )
    assert query.group_by == ("day", "user", "tag")
    assert query.fields() == ("hour", "user", "tag")
    assert query.tags == ("a", "b")
    assert query.zero_data_retention is False
    assert parse(zero_data_retention="true").zero_data_retention is True
    assert parse(group_by="zero_data_retention").fields() == ("zero_data_retention",)
    assert query.order_by == (("total_cost", "desc"), ("hour", "asc"))
    assert (query.limit, query.format, query.timezone) == (10, "csv", "Europe/Berlin")


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"start_date": ""}, "start_date"),
        ({"start_date": "2026-3-1"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
        ({"end_date": "2026-02-28"}, "end_date"),
        ({"end_date": "2040-01-01"}, "end_date"),
        ({"group_by": "day,colour"}, "group_by"),
        ({"group_by": "user,user"}, "group_by"),
        ({"date_part": "minute"}, "date_part"),
        ({"credential_type": "mine"}, "credential_type"),
        ({"zero_data_retention": "yes"}, "zero_data_retention"),
        ({"zero_data_retention": "True"}, "zero_data_retention"),
        ({"tags": ","}, "tags"),
        ({"tags": "x" * 65}, "tags"),
        ({"tags_match": "some"}, "tags_match"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order_by": "cost:desc"}, "order_by"),
        ({"order_by": "user:desc"}, "order_by"),  # not a grouping field of this report
        ({"order_by": "total_cost:down"}, "order_by"),
        ({"format": "xml"}, "format"),
        ({"user_id": "u" * 257}, "user_id"),
        ({"model": ["a", "b"]}, "model"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_are_named(params: dict[str, str | list[str]], parameter: str) -> None:
    with pytest.raises(BadParameter) as raised:
        parse(**params)
    assert raised.value.parameter == parameter
    assert raised.value.message.startswith(f"{parameter}: ")
    assert raised.value.status_code == 400


def test_missing_dates() -> None:
    with pytest.raises(BadParameter, match="start_date"):
        parse_report_query({}, max_limit=10)


def test_cursors_round_trip_and_refuse_tampering() -> None:
    signer = CursorSigner(b"secret")
    cursor = signer.issue("acme", "report-1", Page(20, 10))
    assert signer.read(cursor, "acme", "report-1") == Page(20, 10)
    for team, report, text in [
        ("globex", "report-1", cursor),
        ("acme", "report-2", cursor),
        ("acme", "report-1", cursor[:-1] + ("A" if cursor[-1] != "A" else "B")),
        ("acme", "report-1", "garbage"),
        ("acme", "report-1", CursorSigner(b"other").issue("acme", "report-1", Page(20, 10))),
    ]:
        with pytest.raises(BadParameter) as raised:
            signer.read(text, team, report)
        assert raised.value.parameter == "cursor"


def test_money_is_written_exactly() -> None:
    assert decimal_text(Decimal("96.412500000000")) == "96.4125"
    assert decimal_text(Decimal("0E-12")) == "0"
    assert decimal_text(Decimal("-0E-12")) == "0"
    assert decimal_text(Decimal("100.000000000000")) == "100"
    big = Decimal("12345678901234567890123456.000000000001")
    assert decimal_text(big) == "12345678901234567890123456.000000000001"
    assert to_json({"a": [big, None, True, 3, 'é"']}) == (
        '{"a":[12345678901234567890123456.000000000001,null,true,3,"é\\""]}'
    )
    assert to_csv(["user", "total_cost"], [{"user": None, "total_cost": Decimal("1.50")}]) == (
        "user,total_cost\n,1.5\n"
    )
