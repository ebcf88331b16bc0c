from __future__ import annotations

import pytest

from drophost.errors import ManifestError
from drophost.gitops.manifest import BuildSpec, parse

X = b"      command: x\n      output: p\n"
HEAD = b"sites:\n  - slot: docs\n    repo: hosted:docs\n    build:\n"


def test_a_build_is_read_with_its_defaults() -> None:
    site = parse(HEAD + b"      command: hugo --minify\n      output: public\n").sites[0]
    assert site.build == BuildSpec(command=("/bin/sh", "-c", "hugo --minify"), output="public")
    assert site.build.timeout == 600 and not site.build.network


def test_every_build_key_is_read() -> None:
    text = HEAD + (
        b"      command: [npm, run, build]\n"
        b"      output: dist/\n"
        b"      env: {NODE_ENV: production, LEVEL: 3, DRAFTS: false}\n"
        b"      secrets_env: [NPM_TOKEN]\n"
        b"      cache: [node_modules, .cache/hugo]\n"
        b"      timeout: 2m\n"
        b"      network: true\n"
    )
    build = parse(text).sites[0].build
    assert build == BuildSpec(
        command=("npm", "run", "build"),
        output="dist",
        env=(("NODE_ENV", "production"), ("LEVEL", "3"), ("DRAFTS", "false")),
        secrets_env=("NPM_TOKEN",),
        cache=("node_modules", ".cache/hugo"),
        timeout=120,
        network=True,
    )


def test_a_site_without_build_has_none() -> None:
    assert parse(b"sites:\n  - slot: docs\n    repo: hosted:docs\n").sites[0].build is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"      output: public\n", "4 sites[0].build.command: is required"),
        (b"      command: hugo\n", "4 sites[0].build.output: is required"),
        (b"      command: hugo\n      output: /srv/www\n", '6 sites[0].build.output: "/srv/www" is absolute'),
        (b"      command: hugo\n      output: ../up\n", '6 sites[0].build.output: "../up" escapes'),
        (b"      command: hugo\n      output: .\n", "6 sites[0].build.output: must be a folder"),
        (b"      command: []\n      output: p\n", "5 sites[0].build.command: must be a text"),
        (b'      command: "a\\nb"\n      output: p\n', "5 sites[0].build.command: contains a NUL"),
        (b'      command: ["a\\0b"]\n      output: p\n', "5 sites[0].build.command[0]: contains a NUL"),
        (X + b"      cache: [/root]\n", "7 sites[0].build.cache[0]: must be"),
        (X + b"      cache: [a/../..]\n", "7 sites[0].build.cache[0]: escapes"),
        (X + b"      env: {lower: 1}\n", "7 sites[0].build.env.lower: is not"),
        (X + b'      env: {A: "x\\ry"}\n', "7 sites[0].build.env.A: contains"),
        (X + b"      secrets_env: [a-b]\n", "7 sites[0].build.secrets_env[0]: must name"),
        (X + b"      timeout: 2y\n", "7 sites[0].build.timeout:"),
        (X + b"      network: yes please\n", "7 sites[0].build.network: must be"),
        (X + b"      shell: bash\n", "7 sites[0].build.shell: is not a known key"),
        (b"      - hugo\n", "4 sites[0].build: must be a mapping"),
    ],
)
def test_hostile_builds_are_refused_with_file_line_and_field(body: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(HEAD + body)
    assert str(caught.value.message).startswith("deploy.yaml:" + message), caught.value.message
