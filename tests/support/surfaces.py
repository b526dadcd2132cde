"""What the SDK surface tests (``tests/integration/surfaces``) share: ``meterline
all-in-one`` and the simulator as separate processes (``serve_stack``: the simulator is the
provider ``openai`` on the OpenAI wire and ``anthropic`` on the Anthropic wire), the report
as a client reads it, and the locked npm projects installed once (``npm_installed``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from genai_prices import Usage, calc_price

from meterline.common.config import hash_key, new_key
from meterline.processes import free_port, meterline_process, wait_http

PROVIDER_KEY_ENV = "SURFACES_PROVIDER_KEY"
LISTED_MODELS = {
    "openai": ("gpt-4o", "gpt-5-mini"),
    "anthropic": ("claude-sonnet-4-6", "claude-haiku-4-5"),
}
"""Each provider's ``models`` list (``GET /v1/models``, ``GET /v3/ai/config``); a list only:
other models are forwarded too."""


@dataclass(frozen=True)
class Stack:
    url: str
    key: str
    other_key: str


def write_config(path: Path, simulator: str, keys: dict[str, str]) -> None:
    # The Anthropic base URL is written with /v1 here (the unit tests use the form without).
    path.write_text(
        f"""
[[providers]]
slug = "openai"
wire = "openai"
base_url = "{simulator}/v1"
api_key_env = "{PROVIDER_KEY_ENV}"
models = {json.dumps(list(LISTED_MODELS["openai"]))}

[[providers]]
slug = "anthropic"
wire = "anthropic"
base_url = "{simulator}/v1"
api_key_env = "{PROVIDER_KEY_ENV}"
zero_data_retention = true
models = {json.dumps(list(LISTED_MODELS["anthropic"]))}
"""
        + "".join(
            f'\n[[teams]]\nid = "{team}"\n[[teams.keys]]\nname = "sdk"\n'
            f'sha256 = "{hash_key(key)}"\n'
            for team, key in keys.items()
        )
    )


ConfigWriter = Callable[[Path, str, dict[str, str]], None]
"""Writes the configuration file at a path, for the simulator's URL and each team's key;
its providers read their key from ``PROVIDER_KEY_ENV``."""


@contextmanager
def serve_stack(directory: Path, configure: ConfigWriter | None = None) -> Iterator[Stack]:
    """The simulator and an all-in-one on it (embedded: chDB and the local log in
    ``directory``), for teams ``acme`` (``key``) and ``globex`` (``other_key``), configured
    by ``configure`` (default: ``write_config``)."""
    keys = {"acme": new_key(), "globex": new_key()}
    simulator_port, gateway_port = free_port(), free_port()
    config = directory / "meterline.toml"
    (configure or write_config)(config, f"http://127.0.0.1:{simulator_port}", keys)
    env = {
        **os.environ,
        "METERLINE_CONFIG_FILE": str(config),
        "METERLINE_DATA_DIR": str(directory / "data"),
        "METERLINE_MAX_BATCH_SECONDS": "0.2",
        PROVIDER_KEY_ENV: "sk-simulator",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("CLICKHOUSE_URL", None)
    logs = {name: directory / f"{name}.log" for name in ("simulator", "all-in-one")}
    with (
        meterline_process(
            ["simulator", "--port", str(simulator_port)], env, logs["simulator"]
        ) as sim,
        meterline_process(
            ["all-in-one", "--port", str(gateway_port)], env, logs["all-in-one"]
        ) as gateway,
    ):
        wait_http(f"http://127.0.0.1:{simulator_port}/healthz", sim, logs["simulator"])
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway, logs["all-in-one"])
        yield Stack(f"http://127.0.0.1:{gateway_port}", keys["acme"], keys["globex"])


def report(stack: Stack, key: str | None = None, **params: str) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    query = {
        "start_date": (today - timedelta(days=1)).isoformat(),
        "end_date": (today + timedelta(days=1)).isoformat(),
        **params,
    }
    response = httpx.get(
        f"{stack.url}/v1/report",
        params=query,
        headers={"Authorization": f"Bearer {key or stack.key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = json.loads(response.text, parse_float=Decimal)["results"]
    return rows


def wait_for_requests(stack: Stack, count: int, **filters: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = report(stack, group_by="user", **filters)
        if sum(r["request_count"] for r in rows) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"the report did not reach {count} requests")


def npm_installed(project: Path) -> str | None:
    """Install the npm project's locked packages once; None when ready, else why not.

    Only a machine without Node.js skips: an install that fails (a registry that does not
    answer, a lock that no longer resolves) fails the test, so CI cannot pass without it.
    """
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        return "Node.js and npm are not on the PATH"
    if (project / "node_modules" / "ai").is_dir():
        return None
    # Bounded: without a reachable registry, npm would otherwise retry for minutes.
    command = [npm, "ci", "--no-audit", "--no-fund", "--fetch-timeout=30000", "--fetch-retries=1"]
    try:
        installed = subprocess.run(
            command, cwd=project, capture_output=True, text=True, timeout=180, check=False
        )
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(f"npm ci in {project} did not finish in 180 s") from timeout
    if installed.returncode != 0:
        raise AssertionError(f"npm ci in {project} failed: {installed.stderr[-2000:]}")
    return None


def _per_token(model: str, provider: str, **counts: int) -> str:
    million = 1_000_000
    price = calc_price(Usage(**counts), model_ref=model, provider_id=provider)
    text = format(Decimal(price.total_price) / million, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def listed_model(model_id: str, slug: str, model: str, priced_as: str) -> dict[str, Any]:
    """One model as the AI SDK's getAvailableModels() returns it from ``GET /v3/ai/config``:
    genai-prices' list price per token, as decimal strings."""
    million = 1_000_000
    return {
        "id": model_id,
        "name": model_id,
        "description": None,
        "pricing": {
            "input": _per_token(model, priced_as, input_tokens=million),
            "output": _per_token(model, priced_as, output_tokens=million),
            "cachedInputTokens": _per_token(
                model, priced_as, input_tokens=million, cache_read_tokens=million
            ),
            "cacheCreationInputTokens": _per_token(
                model, priced_as, input_tokens=million, cache_write_tokens=million
            ),
        },
        "specification": {"specificationVersion": "v3", "provider": slug, "modelId": model},
        "modelType": "language",
    }
