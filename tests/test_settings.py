"""Configuration: every mistake names the key, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.domain import parse_requirements
from router.errors import ConfigError, UnknownQueueError
from router.settings import load_settings

MINIMAL = """
agents:
  - {id: a1, skills: {billing: 4}}
queues:
  - name: billing
    requirements: [{skill: billing, min_level: 3}]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_file_and_environment_combine(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_AMI__PORT", "5039")
    monkeypatch.setenv("ACD_AMI__SECRET", "s3")
    settings = load_settings(write(tmp_config, MINIMAL))
    assert settings.ami.port == 5039
    assert settings.ami.secret.get_secret_value() == "s3"
    assert "s3" not in repr(settings) and "s3" not in str(settings.ami)
    assert settings.queues[0].requirements == parse_requirements("billing>=3")


def test_environment_overrides_the_file(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092")
    text = "kafka: {bootstrap_servers: 'file:9092'}\n" + MINIMAL
    assert load_settings(write(tmp_config, text)).kafka.bootstrap_servers == "kafka-1:9092"


def test_secret_from_file(tmp_config: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "ami.secret", "from-file\n")
    settings = load_settings(write(tmp_config, f"ami: {{secret_file: {secret}}}\n" + MINIMAL))
    assert settings.ami.secret.get_secret_value() == "from-file"


def test_unknown_key_is_named(tmp_config: Path) -> None:
    with pytest.raises(ConfigError, match=r"ami.prot: unknown key"):
        load_settings(write(tmp_config, "ami: {prot: 5038}\n" + MINIMAL))


def test_bad_value_names_key_value_and_expectation(tmp_config: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_config, "ami: {port: many}\n" + MINIMAL))
    message = str(caught.value)
    assert "ami.port = 'many'" in message and "valid integer" in message


def test_bad_skill_level_is_named(tmp_config: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"agents.0.skills.billing = 9: Input should be less than or equal to 5"
    ):
        load_settings(write(tmp_config, MINIMAL.replace("billing: 4", "billing: 9")))


def test_bad_strategy_lists_the_choices(tmp_config: Path) -> None:
    with pytest.raises(ConfigError, match=r"strategy = 'fastest'.*longest-idle"):
        load_settings(write(tmp_config, MINIMAL + "    strategy: fastest\n"))


def test_the_site_time_zone_is_an_iana_name(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(write(tmp_config, MINIMAL)).timezone is None
    assert load_settings(write(tmp_config, MINIMAL + "timezone: Europe/Berlin\n")).timezone == "Europe/Berlin"
    for wrong in ("Europe/Berln", "Europe", "../etc/passwd"):
        monkeypatch.setenv("ACD_TIMEZONE", wrong)
        with pytest.raises(ConfigError, match=f"timezone = '{wrong}'.*expected an IANA name such as Europe/Berlin"):
            load_settings(tmp_config)


def test_unknown_environment_section(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_AMII__PORT", "1")
    with pytest.raises(ConfigError, match=r"ACD_AMII__PORT: unknown section 'amii'"):
        load_settings(write(tmp_config, MINIMAL))


def test_bad_environment_value_is_named(tmp_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_AMI__PORT", "x")
    with pytest.raises(ConfigError, match=r"ami.port = 'x'"):
        load_settings(write(tmp_config, MINIMAL))


def test_unknown_queue_reference(tmp_config: Path) -> None:
    text = MINIMAL + "    overflow: {after_s: 60, to_queue: billling}\n"
    with pytest.raises(UnknownQueueError, match=r"'billling' is not a configured queue.*\['billing'\]"):
        load_settings(write(tmp_config, text))


def test_duplicate_queue_names(tmp_config: Path) -> None:
    with pytest.raises(ConfigError, match="defined more than once"):
        load_settings(write(tmp_config, MINIMAL + "  - name: billing\n"))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path / "bad.yaml", "queues: [\n"))


def test_relax_steps_must_increase(tmp_config: Path) -> None:
    text = MINIMAL + "    relax: [{after_s: 30, requirements: []}, {after_s: 10, requirements: []}]\n"
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_settings(write(tmp_config, text))


def test_requirement_grammar_errors_explain_the_format() -> None:
    with pytest.raises(ValueError, match=r"expected 'skill>=level' with level 1-5"):
        parse_requirements("billing>=x")
    assert parse_requirements("") == ()


def test_shipped_example_configuration_and_demo_scenario_are_valid() -> None:
    from load_tests.scenario import default_scenario_path, load_scenario

    root = Path(__file__).resolve().parent.parent
    settings = load_settings(root / "config" / "acd.example.yaml")
    assert [q.name for q in settings.queues] == ["billing", "support", "spanish"]
    assert load_scenario(default_scenario_path()).all_agents()
