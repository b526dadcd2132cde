"""Bad parameters to the query service: a 400 in its own error format, naming the parameter,
and never a 500 or a partial answer."""

from __future__ import annotations

import pytest

from tests.security.conftest import FIRST_DAY, LAST_DAY, TwoTeams

pytestmark = pytest.mark.clickhouse

VALID = {"start_date": FIRST_DAY, "end_date": LAST_DAY}

# (parameter the error must name, the query string's changes; None removes a parameter)
BAD_REPORT: list[tuple[str, dict[str, str | None]]] = [
    ("start_date", {"start_date": None}),
    ("start_date", {"start_date": "2026-13-01"}),
    ("start_date", {"start_date": "yesterday"}),
    ("start_date", {"start_date": "2026-05-01' OR '1'='1"}),
    ("start_date", {"start_date": "\u0662\u0660\u0662\u0666-\u0660\u0665-\u0660\u0661"}),
    ("end_date", {"end_date": ""}),
    ("end_date", {"end_date": "2026-04-30"}),
    ("end_date", {"start_date": "1990-01-01", "end_date": "2030-01-01"}),
    ("group_by", {"group_by": "colour"}),
    ("group_by", {"group_by": "day,day"}),
    ("group_by", {"group_by": "day; DROP TABLE usage_daily"}),
    ("date_part", {"date_part": "minute"}),
    ("user_id", {"user_id": "u" * 257}),
    ("model", {"model": "m" * 10_000}),
    ("credential_type", {"credential_type": "free"}),
    ("tags", {"tags": ",,,"}),
    ("tags", {"tags": ",".join(f"t{n}" for n in range(51))}),
    ("tags", {"tags": "t" * 65}),
    ("tags_match", {"tags_match": "some"}),
    ("timezone", {"timezone": "Mars/Olympus"}),
    ("timezone", {"timezone": "UTC') OR 1=1 --"}),
    ("timezone", {"timezone": "../../etc/passwd"}),
    ("limit", {"limit": "0"}),
    ("limit", {"limit": "-1"}),
    ("limit", {"limit": "ten"}),
    ("limit", {"limit": "\u00b2"}),  # isdigit() says yes, int() says no
    ("limit", {"limit": "9" * 5000}),  # int() refuses this many digits
    ("limit", {"limit": "1e3"}),
    ("limit", {"limit": "100000000"}),
    ("order_by", {"order_by": "colour:desc"}),
    ("order_by", {"order_by": "total_cost:sideways"}),
    ("order_by", {"order_by": "total_cost; DROP TABLE usage_daily"}),
    ("order_by", {"order_by": "user"}),  # not a grouping field of a report by day
    ("format", {"format": "xml"}),
    ("user", {"user": "u1"}),  # a misspelt filter is refused, not ignored
    ("cursor", {"cursor": "x"}),
]


def report(env: TwoTeams, changes: dict[str, str | None]) -> tuple[int, dict[str, object], str]:
    params = {**VALID, **changes}
    response = env.api.get(
        "/v1/report",
        params={k: v for k, v in params.items() if v is not None},
        headers=env.headers("acme"),
    )
    return response.status_code, response.json(), response.headers["content-type"]


@pytest.mark.parametrize(("parameter", "changes"), BAD_REPORT)
def test_bad_report_parameters_are_a_400_naming_the_parameter(
    two_teams: TwoTeams, parameter: str, changes: dict[str, str | None]
) -> None:
    status, body, content_type = report(two_teams, changes)
    assert status == 400, body
    assert content_type == "application/json"
    assert list(body) == ["error"]
    error = body["error"]
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == parameter
    assert str(error["message"]).startswith(f"{parameter}: ")


def test_a_parameter_given_twice_is_a_400(two_teams: TwoTeams) -> None:
    response = two_teams.api.get(
        f"/v1/report?start_date={FIRST_DAY}&start_date=2026-05-02&end_date={LAST_DAY}",
        headers=two_teams.headers("acme"),
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "start_date"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "id"),
        ("?id=", "id"),
        ("?id=00000000-0000-0000-0000-000000002710&id=00000000-0000-0000-0000-000000002711", "id"),
        ("?id=00000000-0000-0000-0000-000000002710&team_id=globex", "team_id"),
        ("?id=%00", "id"),
        ("?id=" + "f" * 5000, "id"),
    ],
)
def test_bad_generation_parameters_are_a_400(
    two_teams: TwoTeams, query: str, parameter: str
) -> None:
    response = two_teams.api.get(f"/v1/generation{query}", headers=two_teams.headers("acme"))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == parameter


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ml_wrong",
        "Bearer ' OR 1=1 --",
        "bearer " + "x" * 10_000,
    ],
)
def test_missing_or_wrong_keys_are_a_401(two_teams: TwoTeams, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/v1/report", "/v1/generation?id=00000000-0000-0000-0000-000000002710"):
        response = two_teams.api.get(path, params=VALID, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_paths_and_methods_answer_in_the_same_format(two_teams: TwoTeams) -> None:
    missing = two_teams.api.get("/v1/nothing", headers=two_teams.headers("acme"))
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong = two_teams.api.post("/v1/report", params=VALID, headers=two_teams.headers("acme"))
    assert wrong.status_code == 405
    assert set(wrong.json()["error"]) >= {"message", "type"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        # Each just under the 64 KiB a URL may have in the test client.
        ("&tags=" + "t" * 60_000, "tags"),
        ("&tags=" + ",".join(["t"] * 25_000), "end_date"),  # one tag: valid, so it runs
        ("".join(f"&p{n}=1" for n in range(6_000)), "p0"),
        ("&user_id=" + "%27" * 20_000, "user_id"),
    ],
)
def test_huge_query_strings_are_a_400_not_a_crash(
    two_teams: TwoTeams, query: str, parameter: str
) -> None:
    response = two_teams.api.get(
        f"/v1/report?start_date={FIRST_DAY}&end_date={LAST_DAY}{query}",
        headers=two_teams.headers("acme"),
    )
    if parameter == "end_date":
        # Twenty-five thousand copies of one tag are one tag filter.
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == parameter
