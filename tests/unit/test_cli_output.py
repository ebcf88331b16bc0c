from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drophost.client import commands
from drophost.client.http import ApiClient, ClientError
from drophost.client.output import human_time, plural

NOW = datetime(2026, 12, 7, 14, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "shown"),
    [
        (NOW - timedelta(seconds=20), "2026-12-07 14:06 UTC (just now)"),
        (NOW - timedelta(minutes=3, seconds=29), "2026-12-07 14:03 UTC (3 min ago)"),
        (NOW - timedelta(hours=5), "2026-12-07 09:06 UTC (5 h ago)"),
        (NOW - timedelta(hours=30), "2026-12-06 08:06 UTC (30 h ago)"),
        (NOW - timedelta(days=3, hours=2), "2026-12-04 12:06 UTC (3 days ago)"),
        (NOW + timedelta(hours=23, minutes=59), "2026-12-08 14:05 UTC (in 23 h)"),
        (NOW + timedelta(days=7), "2026-12-14 14:06 UTC (in 7 days)"),
        (NOW + timedelta(seconds=20), "2026-12-07 14:06 UTC (in under a minute)"),
    ],
)
def test_times_are_shown_to_the_minute_in_utc_with_how_long_ago(at: datetime, shown: str) -> None:
    assert human_time(at.isoformat(), NOW) == shown


def test_api_times_with_microseconds_or_another_zone_are_shown_in_utc_without_them() -> None:
    assert human_time("2026-12-07T14:03:01.123456+00:00", NOW) == "2026-12-07 14:03 UTC (3 min ago)"
    assert human_time("2026-12-07T09:03:01-05:00", NOW) == "2026-12-07 14:03 UTC (3 min ago)"
    assert human_time(None, NOW) == human_time("", NOW) == "-"
    assert human_time("not a time", NOW) == "not a time"


def test_counts_are_plural_unless_one() -> None:
    assert (plural(1, "version"), plural(0, "version"), plural(2, "deployment")) == (
        "1 version",
        "0 versions",
        "2 deployments",
    )


def test_the_token_source_and_the_timeout_come_from_flag_environment_or_cli_ini(tmp_path: Path) -> None:
    config = tmp_path / "drophost" / "cli.ini"
    config.parent.mkdir()
    config.write_text("[drophost]\nserver = http://example.lan:8080\ntoken = from-file\ntimeout = 5\n")
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    parser = argparse.ArgumentParser()
    commands.add_commands(parser.add_subparsers(dest="command"))

    def client(*argv: str, **env: str) -> ApiClient:
        return commands.connect(parser.parse_args(["list", *argv]), {**environ, **env})

    from_file = client()
    assert (from_file.token, from_file.token_source, from_file.timeout) == ("from-file", str(config), 5.0)
    from_env = client(DROPHOST_API_TOKEN="from-env", DROPHOST_TIMEOUT="7")
    assert from_env.token_source == f"the environment variable DROPHOST_API_TOKEN; {config} holds another"
    assert from_env.timeout == 7.0 and from_env.upload_timeout == 600.0
    flagged = client("--token", "from-file", "--timeout", "900")
    assert (flagged.token_source, flagged.timeout, flagged.upload_timeout) == ("--token", 900.0, 900.0)
    with pytest.raises(ClientError, match="must be a number of seconds above 0"):
        client("--timeout", "-1")


@pytest.mark.parametrize("token", ["s3cr\r\nX-Injected: yes", "s3cr\net", "s3cr\x00", "s3cr\x7f", "s3\x85cr"])
def test_a_token_with_a_control_character_is_refused_naming_its_source_never_the_token(
    tmp_path: Path, token: str
) -> None:
    config = tmp_path / "cli.ini"
    # configparser reads an indented next line as the value's continuation: "s3cr\net".
    config.write_text("[drophost]\nserver = http://127.0.0.1:9\ntoken = s3cr\n  et\n")
    parser = argparse.ArgumentParser()
    commands.add_commands(parser.add_subparsers(dest="command"))
    cases = [
        (["list", "--token", token], {}, "--token"),
        (["list"], {"DROPHOST_API_TOKEN": token}, "the environment variable DROPHOST_API_TOKEN"),
        (["list", "--config", str(config)], {}, str(config)),
    ]
    for argv, environ, source in cases:
        out, err = io.StringIO(), io.StringIO()
        args = parser.parse_args(argv)
        code = commands.run(args, {"HOME": str(tmp_path), "DROPHOST_URL": "http://127.0.0.1:9", **environ}, out, err)
        assert code == 2
        assert err.getvalue() == (
            f"drophost: the API token from {source} has a control character (a line break?) in it; copy it again\n"
        )
        assert "s3" not in err.getvalue() + out.getvalue()
