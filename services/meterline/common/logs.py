"""One logging setup for every ``meterline`` command, uvicorn's loggers included.

``METERLINE_LOG_FORMAT=text`` (the default) writes ``time level logger message`` lines;
``json`` writes one object per line with ``time``, ``level``, ``logger``, ``message`` and the
fields a caller passed with ``extra={...}`` (the access lines' event id, team, durations).
Neither writes a secret that reaches it by accident: fields named like one and the password
of a URL are masked.

Client libraries (aiokafka, clickhouse-connect, httpx) log the same error again and again
while what they talk to is down: aiokafka logs one every 100 ms while Kafka is away.
:class:`RepeatFilter` lets the first through and then one per interval, which says how many
it held back."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from pydantic_settings import BaseSettings, SettingsConfigDict

REPEAT_INTERVAL_SECONDS: Final = 30.0
"""At most one line per repeating message of a client library in this long."""

_STANDARD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

_SECRET_NAME: Final = re.compile(r"(authorization|api_?key|password|secret|token|cookie)", re.I)
_URL_PASSWORD: Final = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@")

OWN_LOGGERS: Final = ("meterline", "uvicorn")
"""Loggers whose repeats are not held back: the services' own lines (access lines share no
template, but a service's repeated warning is news each time it is logged)."""


HTTP_CLIENT_LOGGERS: Final = ("httpx", "httpx2", "httpcore", "httpcore2")


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERLINE_", extra="ignore")

    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is written, not as it was when logging
    was set up: whoever swaps it (a test capturing output, a tool) and closes the old one
    would otherwise leave every later line failing on a closed file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """``StreamHandler.__init__`` and ``setStream`` set it: ``sys.stderr`` stands."""


def mask_secrets(text: str) -> str:
    """``scheme://user:password@host`` with the password masked."""
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed with ``extra={...}``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        for name, value in extra_fields(record).items():
            if name in line:
                name = f"extra_{name}"
            line[name] = "***" if _SECRET_NAME.search(name) and value is not None else value
        if record.exc_info:
            line["exception"] = mask_secrets(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = mask_secrets(record.exc_text)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class RepeatFilter(logging.Filter):
    """Holds back repeats of a client library's warnings and errors.

    A repeat is the same logger and the same message template (the format string before its
    arguments: "Unable connect to node with id %s: %s"), so a message naming a different
    node each time is still one message. The first passes; later ones pass at most once per
    ``interval`` seconds, with "(suppressed K similar)" when K were held back since."""

    def __init__(self, interval: float = REPEAT_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name.split(".")[0] in OWN_LOGGERS:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval:
                self._seen[key] = (seen[0], seen[1] + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # templates are few; this only bounds a surprise
                self._seen = {key: (now, 0)}
        if seen is not None and seen[1]:
            record.msg = f"{record.getMessage()} (suppressed {seen[1]} similar)"
            record.args = None
        return True


class LevelFloor(logging.Filter):
    """Drops records of the named loggers (and their children) below a level. A filter on
    the handler rather than the loggers' levels, which libraries set themselves on import
    (clickhouse-connect sets urllib3's)."""

    def __init__(self, floors: Mapping[str, str]) -> None:
        super().__init__()
        self.floors = {name: logging.getLevelName(level) for name, level in floors.items()}

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        while True:
            floor = self.floors.get(name)
            if floor is not None:
                return bool(record.levelno >= floor)
            if "." not in name:
                return True
            name = name.rsplit(".", 1)[0]


def logging_config(
    log_format: str = "text", level: str = "INFO", quiet: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: one stderr handler with the format chosen
    and the repeat filter, every logger propagating to it; uvicorn's access log off (the
    services write their own access line). ``quiet``: logger name -> least level logged."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    loggers: dict[str, Any] = {
        name: {"handlers": [], "propagate": True, "level": level}
        for name in ("uvicorn", "uvicorn.error")
    }
    loggers["uvicorn.access"] = {"handlers": [], "propagate": False, "level": "WARNING"}
    # httpx (and httpx2, the openai SDK's) logs every request at INFO: the report client's
    # fetches, the demo's requests, health checks and webhook deliveries would fill the log.
    floors = {**dict.fromkeys(HTTP_CLIENT_LOGGERS, "WARNING"), **(quiet or {})}
    for name, least in floors.items():
        loggers[name] = {"handlers": [], "propagate": True, "level": least}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "repeats": {"()": RepeatFilter},
            "floors": {"()": LevelFloor, "floors": floors},
        },
        "formatters": {"main": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "meterline.common.logs.StderrHandler",
                "formatter": "main",
                "filters": ["floors", "repeats"],
            }
        },
        "loggers": loggers,
        "root": {"handlers": ["stderr"], "level": level},
    }


_current: dict[str, Any] = logging_config()


def configure_logging(
    log_format: Literal["text", "json"] = "text",
    level: str = "INFO",
    quiet: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Set logging up; return the configuration, which uvicorn is given too (it applies a
    configuration of its own otherwise)."""
    global _current
    _current = logging_config(log_format, level, quiet)
    logging.config.dictConfig(_current)
    return _current


def current_config() -> dict[str, Any]:
    """The configuration last applied, for uvicorn."""
    return _current
