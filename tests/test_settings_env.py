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
