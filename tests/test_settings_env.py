"""A list or mapping given in an ACD_* variable must be JSON; when it is not, start-up
says so in one line (exit 2), not with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.errors import ConfigError
from router.settings import load_settings


@pytest.mark.parametrize("name", ["ACD_QUEUES", "ACD_AGENTS", "ACD_ROUTING__RING_NO_ANSWER"])
def test_a_variable_that_is_not_json_is_a_configuration_error(
    name: str, tmp_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "not json")
    tmp_config.write_text("queues: [{name: billing}]\n")
    with pytest.raises(ConfigError, match="must be JSON"):
        load_settings(tmp_config)


def test_a_list_given_as_json_is_read(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_QUEUES", '[{"name": "support"}]')
    monkeypatch.setenv("ACD_ROUTING__RING_NO_ANSWER__AUTO_PAUSE", "false")
    tmp_config.write_text("queues: [{name: billing}]\n")
    settings = load_settings(tmp_config)
    assert [queue.name for queue in settings.queues] == ["support"]
    assert settings.routing.ring_no_answer.auto_pause is False


def test_the_postgres_dsn_comes_from_the_environment_or_a_secret_file(
    tmp_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_config.write_text("postgres: {pool_size: 2}\n")
    monkeypatch.setenv("ACD_POSTGRES__DSN", "postgresql://acd:s3cret@db:5432/acd")
    settings = load_settings(tmp_config).postgres
    assert settings.require_dsn() == "postgresql://acd:s3cret@db:5432/acd" and settings.pool_size == 2
    assert "s3cret" not in repr(settings)
    monkeypatch.delenv("ACD_POSTGRES__DSN")
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://acd:fromfile@db/acd\n")
    monkeypatch.setenv("ACD_POSTGRES__DSN_FILE", str(secret))
    assert load_settings(tmp_config).postgres.require_dsn() == "postgresql://acd:fromfile@db/acd"


def test_no_dsn_or_a_wrong_one_says_what_to_set(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_config.write_text("{}\n")
    with pytest.raises(ConfigError, match="no PostgreSQL DSN: set ACD_POSTGRES__DSN"):
        load_settings(tmp_config).postgres.require_dsn()
    monkeypatch.setenv("ACD_POSTGRES__DSN", "mysql://root:hunter2@db/acd")
    with pytest.raises(ConfigError, match=r"postgres\.dsn = \*\*\*: .*expected a postgresql:// URL") as caught:
        load_settings(tmp_config)
    assert "hunter2" not in str(caught.value)
