from __future__ import annotations

from pathlib import Path

from drophost.cli import config_file
from drophost.settings import Settings


def test_the_deploy_yaml_named_on_the_command_line_wins_over_drophost_config(tmp_path: Path) -> None:
    settings = Settings.from_env({"DROPHOST_CONFIG": "/etc/drophost/deploy.yaml"}, data_dir=tmp_path)
    assert config_file("site.yaml", settings) == "site.yaml"
    assert config_file(None, settings) == "/etc/drophost/deploy.yaml"
    assert config_file(None, Settings.from_env({}, data_dir=tmp_path)) == "deploy.yaml"
    assert config_file(None, Settings.from_env({"DROPHOST_CONFIG": ""}, data_dir=tmp_path)) == "deploy.yaml"
