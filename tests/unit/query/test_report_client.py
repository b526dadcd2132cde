from __future__ import annotations

import json

import httpx
import pytest

from meterline.query.report_client import run


def pages(request: httpx.Request) -> httpx.Response:
    assert request.headers["authorization"] == "Bearer ml_k"
    assert request.url.params["group_by"] == "user"
    cursor = request.url.params.get("cursor")
    row = {"user": None if cursor else "u1", "total_cost": 1.25, "request_count": 3}
    body = {"results": [row], "next_cursor": None if cursor else "c1"}
    return httpx.Response(200, text=json.dumps(body))


def test_follows_cursors_and_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--key", "ml_k", "--group-by", "user", "--limit", "1"]
    assert run(argv, httpx.MockTransport(pages)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["user", "total_cost", "request_count"]
    assert out[1].split() == ["u1", "1.25", "3"]
    assert out[2].split() == ["-", "1.25", "3"]


def test_json_output_keeps_money_as_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--key", "ml_k", "--group-by", "user", "--format", "json"]
    assert run(argv, httpx.MockTransport(pages)) == 0
    assert '"total_cost":1.25' in capsys.readouterr().out


def test_errors_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": "group_by: 'x' is not one of ...", "type": "invalid"}}
        return httpx.Response(400, json=body)

    assert run(["--key", "ml_k", "--group-by", "x"], httpx.MockTransport(refuse)) == 1
    assert "400: group_by" in capsys.readouterr().err


def test_a_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METERLINE_API_KEY", raising=False)
    assert run([], httpx.MockTransport(pages)) == 2
