"""README.md and .env.example stay true to the code: every setting, the example deploy.yaml, the commands."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from drophost.client import commands
from drophost.gitops import webhooks
from drophost.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FIELDS = {ENV_PREFIX + spec.name.upper(): spec for spec in dataclasses.fields(Settings)}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def settings_table() -> dict[str, str]:
    """variable -> its default cell, from the rows of the Settings section's table."""
    rows: dict[str, str] = {}
    for line in section("Settings").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(DROPHOST_[A-Z0-9_]+)`", cells[0]) if line.startswith("|") else None
        if match:
            rows[match.group(1)] = cells[1]
    return rows


def written(default: object) -> set[str]:
    """How a default may be written: as Python prints it, or a whole float without `.0`."""
    forms = {str(default)}
    if isinstance(default, float) and default.is_integer():
        forms.add(str(int(default)))
    return forms


def test_the_readme_table_lists_every_setting_with_its_default() -> None:
    table = settings_table()
    assert sorted(set(FIELDS) - set(table)) == []
    assert sorted(set(table) - set(FIELDS)) == [], "the table names variables Settings does not have"
    for name, spec in FIELDS.items():
        if spec.default is dataclasses.MISSING:
            continue
        cell = table[name]
        if spec.default == "":
            assert cell.startswith("empty"), f"{name}: the default is empty, the README says {cell!r}"
        else:
            assert any(f"`{form}`" in cell for form in written(spec.default)), f"{name}: {cell!r}"


def compose_sets() -> set[str]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    names = set(compose["services"]["service"]["environment"])
    # Settings.from_env reads DATABASE_URL as database_url.
    return names | ({ENV_PREFIX + "DATABASE_URL"} if "DATABASE_URL" in names else set())


def test_env_example_lists_every_setting_compose_does_not_set() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    found: dict[str, tuple[bool, str]] = {}
    for line in lines:
        match = re.fullmatch(r"(# )?(DROPHOST_[A-Z0-9_]+)=(.*)", line)
        if match:
            found[match.group(2)] = (match.group(1) is not None, match.group(3))
    exempt = compose_sets()
    assert sorted(name for name in FIELDS if name not in found and name not in exempt) == []
    for name, (commented, value) in found.items():
        if not commented or name not in FIELDS:
            continue
        default = FIELDS[name].default
        assert value in written(default), f"{name}: .env.example says {value!r}, the default is {default!r}"


def test_the_readme_shows_the_root_deploy_yaml() -> None:
    example = (ROOT / "deploy.yaml").read_text().split("\n\n", 1)[1]  # without the header comment
    assert f"```yaml\n{example}```" in section("GitOps: deploy.yaml, webhooks, git push")


def test_the_readme_shows_every_client_command_and_webhook() -> None:
    cli = section("The command line")
    assert [c for c in commands.COMMANDS if f"drophost {c} " not in cli] == []
    gitops = section("GitOps: deploy.yaml, webhooks, git push")
    assert [p for p in webhooks.PROVIDERS if f"/api/webhooks/{p}`" not in gitops] == []
