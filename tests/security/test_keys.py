"""Gateway keys: stored as SHA-256 hashes only, looked up by the hash of what was presented
and confirmed with a constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from meterline.cli import main as cli_main
from meterline.common.config import (
    GatewayConfig,
    GatewayKey,
    KeyRing,
    TeamConfig,
    hash_key,
    load_config,
    new_key,
)


def ring(*keys: str) -> tuple[KeyRing, GatewayConfig]:
    config = GatewayConfig(
        teams=[
            TeamConfig(id=f"team{n}", keys=[GatewayKey(name=f"k{n}", sha256=hash_key(key))])
            for n, key in enumerate(keys)
        ]
    )
    return KeyRing(config), config


def test_keys_are_random_and_stored_as_their_sha256() -> None:
    key = new_key()
    assert key.startswith("ml_") and len(key) > 40 and key != new_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    _, config = ring(key)
    dumped = config.model_dump_json()
    assert key not in dumped and hash_key(key) in dumped


def test_only_the_exact_key_authenticates() -> None:
    key, other = new_key(), new_key()
    keys, _ = ring(key, other)
    found = keys.authenticate(key)
    assert found is not None and found[0].id == "team0" and found[1].name == "k0"
    found = keys.authenticate(other)
    assert found is not None and found[0].id == "team1"
    for wrong in (
        "",
        None,
        key[:-1],
        key + " ",
        key.upper(),
        hash_key(key),  # the stored hash is not a key
        "ml_" + "A" * 43,
    ):
        assert keys.authenticate(wrong) is None


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup is a dict on the SHA-256 of the presented key: its timing depends on that
    hash, which an attacker cannot steer towards a stored one. The match is then confirmed
    with hmac.compare_digest, whose time does not depend on where two values differ."""
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key = new_key()
    keys, _ = ring(key)
    assert keys.authenticate(key) is not None
    assert compared == [(hash_key(key), hash_key(key))]


def test_a_config_file_holds_hashes_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "meterline.toml"
    assert cli_main(["init", "--config", str(path), "--team", "acme"]) == 0
    key = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert key.startswith("ml_")
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    found = KeyRing(load_config(path)).authenticate(key)
    assert found is not None and found[0].id == "acme"


def test_a_malformed_stored_hash_is_refused_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="sha256"):
        GatewayKey(name="k", sha256="not-a-hash")
    with pytest.raises(ValueError, match="one team only"):
        digest = hash_key(new_key())
        GatewayConfig(
            teams=[
                TeamConfig(id="a", keys=[GatewayKey(name="k", sha256=digest)]),
                TeamConfig(id="b", keys=[GatewayKey(name="k", sha256=digest)]),
            ]
        )
