"""Settings: read from the environment once, validated, frozen; errors name the variable."""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
import sys

import pytest

from engine.errors import SettingsError
from engine.settings import DEFAULT_RETRY_SCHEDULE_S, Settings


def test_nothing_set_gives_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.embedded
    assert settings.database_url is None and settings.broker_url is None
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("/var/hookline.db")
    assert settings.max_body_bytes == 256 * 1024
    assert settings.retry_schedule_s == DEFAULT_RETRY_SCHEDULE_S
    assert settings.dangerous_allow_private_networks is False


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bind = "0.0.0.0:1"  # type: ignore[misc]


def test_values_are_parsed_into_their_types() -> None:
    settings = Settings.from_env(
        {
            "HOOKLINE_DATABASE_URL": "postgresql://u@db:5432/hookline",
            "HOOKLINE_BROKER_URL": "amqp://guest:guest@mq:5672/%2F",
            "HOOKLINE_WORKER_THREADS": "128",
            "HOOKLINE_REQUEST_TIMEOUT_S": "20.5",
            "HOOKLINE_RETRY_SCHEDULE_S": "1,2,3",
            "HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS": "yes",
            "HOOKLINE_ALLOWED_CIDRS": "10.1.0.0/16, 192.168.5.0/24",
            "HOOKLINE_LOG_LEVEL": "DEBUG",
        }
    )
    assert not settings.embedded
    assert settings.worker_threads == 128
    assert settings.request_timeout_s == 20.5
    assert settings.retry_schedule_s == (1, 2, 3)
    assert settings.dangerous_allow_private_networks is True
    assert settings.allowed_cidrs == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("192.168.5.0/24"),
    )
    assert settings.log_level == "debug"


def test_an_empty_value_means_the_default() -> None:
    assert Settings.from_env({"HOOKLINE_BIND": "  "}).bind == "127.0.0.1:8000"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HOOKLINE_DATABASE_URL", "mysql://db/hookline"),
        ("HOOKLINE_DATABASE_URL", "postgresql:///nohost"),
        ("HOOKLINE_BROKER_URL", "redis://localhost"),
        ("HOOKLINE_BIND", "8000"),
        ("HOOKLINE_BIND", "localhost:99999"),
        ("HOOKLINE_WORKER_THREADS", "lots"),
        ("HOOKLINE_WORKER_THREADS", "0"),
        ("HOOKLINE_MAX_BODY_BYTES", "12"),
        ("HOOKLINE_REQUEST_TIMEOUT_S", "-1"),
        ("HOOKLINE_RETRY_SCHEDULE_S", "5,soon"),
        ("HOOKLINE_RETRY_SCHEDULE_S", "0"),
        ("HOOKLINE_DANGEROUS_ALLOW_PRIVATE_NETWORKS", "maybe"),
        ("HOOKLINE_ALLOWED_CIDRS", "10.0.0.0/33"),
        ("HOOKLINE_ADMIN_TOKEN", "short"),
        ("HOOKLINE_LOG_FORMAT", "xml"),
        ("HOOKLINE_EVENT_LOOP", "tokio"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert variable in str(caught.value)


def test_a_request_timeout_shorter_than_the_connect_timeout_is_refused() -> None:
    with pytest.raises(SettingsError, match="HOOKLINE_REQUEST_TIMEOUT_S"):
        Settings.from_env({"HOOKLINE_REQUEST_TIMEOUT_S": "1", "HOOKLINE_CONNECT_TIMEOUT_S": "2"})


def test_a_bad_setting_stops_the_command_with_a_message_naming_it(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        env={"HOOKLINE_WORKER_THREADS": "many", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        check=False,
    )
    assert done.returncode == 2
    assert "HOOKLINE_WORKER_THREADS" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_broker_url_is_printed_with_its_password_masked() -> None:
    from engine.settings import masked_url

    assert masked_url("amqp://u:s3cret@h:5672/v") == "amqp://u:***@h:5672/v"
    assert masked_url("amqp://h:5672/%2F") == "amqp://h:5672/%2F"
    assert masked_url("amqp://u:p%40ss@h/v") == "amqp://u:***@h/v"
