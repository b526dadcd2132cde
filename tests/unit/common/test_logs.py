"""The log formats and the repeat filter, on the records aiokafka really logs."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys

import pytest

from meterline.common.logs import JsonFormatter, RepeatFilter, StderrHandler, logging_config


@pytest.fixture
def captured() -> logging.Handler:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    return handler


def lines(handler: logging.Handler) -> list[dict[str, object]]:
    stream = handler.stream  # type: ignore[attr-defined]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_extra_fields_and_no_secrets(captured: logging.Handler) -> None:
    log = logging.getLogger("meterline.access")
    log.addHandler(captured)
    try:
        log.warning(
            "GET /v1/chat 200",
            extra={"event_id": "e-1", "team": "acme", "duration_ms": 12.5, "api_key": "sk-x"},
        )
        logging.getLogger("meterline.access.sub").error(
            "cannot reach http://default:hunter2@clickhouse:8123/ now"
        )
    finally:
        log.removeHandler(captured)
    first, second = lines(captured)
    assert first["logger"] == "meterline.access" and first["level"] == "WARNING"
    assert first["message"] == "GET /v1/chat 200"
    assert (first["event_id"], first["team"], first["duration_ms"]) == ("e-1", "acme", 12.5)
    assert first["api_key"] == "***"
    assert str(first["time"]).endswith("+00:00")
    assert "hunter2" not in json.dumps(second) and "default:***@clickhouse" in str(
        second["message"]
    )


def test_repeats_of_a_client_library_pass_once_per_interval(captured: logging.Handler) -> None:
    """aiokafka's own logger and message template (aiokafka/client.py), logged every 100 ms
    while the broker is down."""
    repeats = RepeatFilter(interval=3600)
    captured.addFilter(repeats)
    log = logging.getLogger("aiokafka")
    log.addHandler(captured)
    log.propagate = False
    try:
        for attempt in range(50):
            log.error("Unable connect to node with id %s: %s", 1, f"refused #{attempt}")
        log.error("Unable to update metadata from %s", [1])  # another template: passes
        repeats.interval = 0  # the interval has passed
        log.error("Unable connect to node with id %s: %s", 1, "refused again")
    finally:
        log.removeHandler(captured)
        log.propagate = True
    messages = [line["message"] for line in lines(captured)]
    assert messages == [
        "Unable connect to node with id 1: refused #0",
        "Unable to update metadata from [1]",
        "Unable connect to node with id 1: refused again (suppressed 49 similar)",
    ]


def test_the_services_own_lines_are_never_held_back(captured: logging.Handler) -> None:
    captured.addFilter(RepeatFilter(interval=3600))
    log = logging.getLogger("meterline.consumer")
    log.addHandler(captured)
    try:
        for n in range(3):
            log.warning("insert failed, retrying in %ss", n)
    finally:
        log.removeHandler(captured)
    assert len(lines(captured)) == 3


def test_uvicorn_access_log_is_off_and_httpx_quiet() -> None:
    config = logging_config("json", "INFO")
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    assert config["loggers"]["httpx2"]["level"] == "WARNING"
    assert config["formatters"]["main"]["()"] is JsonFormatter


def test_lines_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test or tool that swaps sys.stderr and closes the old one leaves logging working."""
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("meterline.test.stderr")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        logger.warning("one")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logger.warning("two")
        assert second.getvalue() == "two\n"
    finally:
        logger.removeHandler(handler)
