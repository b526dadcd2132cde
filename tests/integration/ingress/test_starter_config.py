"""The configuration `meterline init` writes works as written: a request to the bundled
simulator through the gateway is answered and metered (the simulator, like a real provider,
refuses requests without a key, so the starter file names one)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from meterline.cli import main as cli_main
from meterline.common.config import load_config
from meterline.ingress.app import create_app
from meterline.ingress.publishing.memory import MemoryPublisher
from meterline.ingress.settings import IngressSettings
from meterline.simulator.app import create_app as create_simulator
from tests.support.gateway import ServerThread


def test_the_starter_configuration_reaches_the_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERLINE_SIMULATOR_KEY", "sk-anything")
    with ServerThread(create_simulator()) as simulator:
        path = tmp_path / "meterline.toml"
        argv = ["init", "--config", str(path), "--simulator-url", f"{simulator.url}/v1"]
        assert cli_main(argv) == 0
        key = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
        publisher = MemoryPublisher()
        app = create_app(IngressSettings(), load_config(path), publisher)
        with ServerThread(app) as gateway:
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
            completion = client.chat.completions.create(
                model="simulator/gpt-4o", messages=[{"role": "user", "content": "Hello"}]
            )
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    [event] = publisher.events
    assert (event.team_id, event.provider, event.status) == ("default", "simulator", "success")
