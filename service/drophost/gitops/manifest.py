"""deploy.yaml -> frozen dataclasses (pure). Every error names the file, line and field."""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from drophost.errors import DrophostError, GitError, ManifestError
from drophost.gitops.refs import MAX_PR_NUMBER, PR_FIELD, glob
from drophost.gitops.repourls import (
    RepoUrl,
    check_branch,
    check_repo_path,
    parse_repo_url,
    repo_key,
    source_key,
    source_pattern,
)
from drophost.names import RESERVED_SLOTS, is_valid_slot, parse_ttl, validate_slot
from drophost.pipeline import feedback, siterules
from drophost.pipeline.feedback import FeedbackConfig, Notifier, StatusSpec
from drophost.pipeline.siterules import Access, RuleError, SiteOptions

MAX_BYTES = 256 * 1024
MAX_DEPTH = 12
MAX_SITES = 1000
MAX_TTL = 10 * 365 * 24 * 3600
BRANCH_FIELD = "{branch}"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_RULE_KEYS = ("spa", "clean_urls", "redirects", "headers", "access")
_SITE_KEYS = {
    "slot",
    "repo",
    "branch",
    "branches",
    "path",
    "ttl",
    "webhook_secret_env",
    "token_env",
    "build",
    "tags",
    "previews",
    "status",
    *_RULE_KEYS,
}
_BUILD_KEYS = {"command", "output", "env", "secrets_env", "cache", "timeout", "network"}
# A build's own variables are the platform's (build.py); deploy.yaml cannot override them.
_BUILD_TEXT_MAX = 4096
DEFAULT_BUILD_TIMEOUT = 600
MAX_BUILD_TIMEOUT = 24 * 3600
_TOP_KEYS = {"sites", "sources", "poll_interval", "previews", "notifications"}
_STATUS_KEYS = {"provider", "api_url", "token_env"}
_NOTIFICATION_KEYS = {"url", "format", "events", "secret_env", "slots"}
MAX_NOTIFICATIONS = 64
_SLOT_GLOB = re.compile(r"^[a-z0-9*?\[\]!-]{1,63}$")


@dataclass(frozen=True)
class BuildSpec:
    """How a site is built before it is published: a command run in the sandbox (pipeline/sandbox.py).

    `command` is an argument list; a string in deploy.yaml becomes ["/bin/sh", "-c", string].
    `output`, `cache` are folders relative to the site's path; `secrets_env` names variables of
    DropHost's own environment passed to the build (their values never appear in this file).
    """

    command: tuple[str, ...]
    output: str
    env: tuple[tuple[str, str], ...] = ()
    secrets_env: tuple[str, ...] = ()
    cache: tuple[str, ...] = ()
    timeout: int = DEFAULT_BUILD_TIMEOUT
    network: bool = False


@dataclass(frozen=True)
class SiteSpec:
    """One declared site: a fixed slot (following a branch, or the newest of its `tags`), a slot
    template with {branch} (one preview slot per branch), or one with {pr} (one per pull request)."""

    slot: str
    repo: RepoUrl
    branches: tuple[str, ...]
    path: str = ""
    ttl_seconds: int | None = None
    webhook_secret_env: str | None = None
    # The variable holding an access token for a private https repository (never the token itself).
    token_env: str | None = None
    build: BuildSpec | None = None
    # spa, clean_urls, redirects, headers, access (see the README's "Site rules").
    rules: SiteOptions = SiteOptions()
    line: int = 0
    index: int = 0
    # `tags: "v*"`: the slot follows the newest matching tag (gitops/refs.py's version order), no branch.
    tags: str | None = None
    # `previews: {forks: true}` of a {pr} site: pull requests from forks are previewed too.
    forks: bool = False
    # `status:`: the forge its deploys' commit statuses are posted to.
    status: StatusSpec | None = None

    @property
    def is_preview(self) -> bool:
        return BRANCH_FIELD in self.slot

    @property
    def is_pull_request(self) -> bool:
        return PR_FIELD in self.slot

    @property
    def branch(self) -> str:
        """The one branch of a fixed slot ("" for a site following tags or pull requests)."""
        return self.branches[0] if self.branches else ""

    @property
    def tracked(self) -> str:
        """What managed_slots records the slot follows: the branch, or refs/tags/<pattern>."""
        return f"refs/tags/{self.tags}" if self.tags is not None else self.branch

    @property
    def follows(self) -> str:
        """What the site follows, for messages: "branch main", "tags v*", "pull requests"."""
        if self.tags is not None:
            return f"tags {self.tags}"
        if self.is_pull_request:
            return "pull requests" + (" (forks too)" if self.forks else "")
        return f"branch {self.branch}"

    def wants(self, branch: str) -> bool:
        return any(glob(p).fullmatch(branch) for p in self.branches)

    def wants_tag(self, tag: str) -> bool:
        return self.tags is not None and glob(self.tags).fullmatch(tag) is not None

    def owns(self, slot: str) -> bool:
        """Whether a {pr} site's template makes this slot."""
        before, _, after = self.slot.partition(PR_FIELD)
        number = slot[len(before) : len(slot) - len(after)] if slot.startswith(before) else ""
        return self.is_pull_request and slot.endswith(after) and number.isdigit() and not number.startswith("0")

    def slot_for(self, branch: str) -> str:
        return preview_slot(self.slot, branch) if self.is_preview else self.slot


@dataclass(frozen=True)
class Manifest:
    sites: tuple[SiteSpec, ...] = ()
    allow: tuple[str, ...] = ()
    poll_interval: int | None = None
    file: str = "deploy.yaml"
    # `previews: {access: ...}`: every preview slot's access unless its site says otherwise.
    preview_access: Access | None = None
    # `notifications:`: where live, failed, rollback... are announced (the only source of destinations).
    notifications: tuple[Notifier, ...] = ()

    def site_for(self, slot: str, branch: str) -> SiteSpec | None:
        """The declared site a deploy of `branch` into `slot` comes from."""
        for site in self.sites:
            if site.slot_for(branch) == slot and (not site.is_preview or site.wants(branch)):
                return site
        return None

    def feedback(self) -> FeedbackConfig:
        """The statuses and notifications this file declares, for the pipeline's outbox planning."""

        def status_for(slot: str, branch: str) -> StatusSpec | None:
            site = self.site_for(slot, branch)
            return site.status if site is not None else None

        has_statuses = any(site.status is not None for site in self.sites)
        return FeedbackConfig(notifiers=self.notifications, status_for=status_for, has_statuses=has_statuses)

    def site_rules(self, slot: str, branch: str) -> SiteOptions | None:
        """The rules deploy.yaml gives the slot a push of `branch` deploys to (None: not declared)."""
        for site in self.sites:
            if site.is_pull_request:
                if not site.owns(slot):
                    continue
            elif site.slot_for(branch) != slot or (site.is_preview and not site.wants(branch)):
                continue
            if (
                (site.is_preview or site.is_pull_request)
                and site.rules.access is None
                and self.preview_access is not None
            ):
                return replace(site.rules, access=self.preview_access)
            return site.rules
        return None

    def fixed_sites(self) -> dict[str, SiteSpec]:
        return {site.slot: site for site in self.sites if not site.is_preview and not site.is_pull_request}

    def sites_for_repo(self, url: str) -> list[SiteSpec]:
        key = repo_key(url)
        return [site for site in self.sites if repo_key(site.repo.text) == key]

    def hosted_names(self) -> set[str]:
        return {site.repo.hosted_name for site in self.sites if site.repo.hosted_name}

    def allows(self, url: str) -> bool:
        """Declared by a site, or matching a sources.allow pattern: the whole URL, scheme and user too."""
        key = source_key(url)
        if any(source_key(site.repo.text) == key for site in self.sites):
            return True
        return any(source_pattern(p).fullmatch(key) for p in self.allow)


def preview_slot(template: str, branch: str) -> str:
    """ "docs-{branch}" + "feature/New Nav" -> "docs-feature-new-nav" (always a valid slot name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    fixed = len(template) - len(BRANCH_FIELD)
    room = 63 - fixed
    if not slug or len(slug) > room:
        digest = hashlib.sha256(branch.encode()).hexdigest()[:8]
        slug = (slug[: max(room - 9, 0)].strip("-") + "-" + digest).strip("-")
    slot = template.replace(BRANCH_FIELD, slug)
    return slot if slot not in RESERVED_SLOTS else f"{slot}-{hashlib.sha256(branch.encode()).hexdigest()[:8]}"


def load_file(path: Path) -> Manifest:
    """Read and check a deploy.yaml file."""
    return parse(read_file(path), path.name)


def read_file(path: Path) -> bytes:
    """The bytes of a deploy.yaml (at most one byte more than MAX_BYTES, so parse can refuse it)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"cannot be read ({exc.strerror})", file=path.name, line=None, field=None) from None


def parse(raw: bytes, file: str = "deploy.yaml") -> Manifest:
    """Check the text of a deploy.yaml and return what it declares, or raise ManifestError."""
    if len(raw) > MAX_BYTES:
        raise ManifestError(f"is larger than {MAX_BYTES} bytes", file=file, line=None, field=None)
    text = _decode(raw, file)
    root = _compose(text, file)
    checker = _Checker(file)
    return checker.manifest(root)


def secret_problems(manifest: Manifest, environ: Mapping[str, str]) -> list[str]:
    """Sites whose webhook secret or token variable is named but unset: an error for that site, never
    "unsigned" or "anonymous"."""
    problems = []
    for site in manifest.sites:
        status_env = site.status.token_env if site.status else None
        for key, name in (
            ("webhook_secret_env", site.webhook_secret_env),
            ("token_env", site.token_env),
            ("status.token_env", status_env),
        ):
            if name and not environ.get(name):
                problems.append(f"{manifest.file}:{site.line} sites[{site.index}].{key}: {name} is not set")
    for index, notifier in enumerate(manifest.notifications):
        if notifier.secret_env and not environ.get(notifier.secret_env):
            problems.append(f"{manifest.file} notifications[{index}].secret_env: {notifier.secret_env} is not set")
    return problems


def token_for(manifest: Manifest, repo: RepoUrl, environ: Mapping[str, str]) -> str | None:
    """The access token for fetching `repo`: from the token_env of a site declaring that very URL."""
    key = source_key(repo.text)
    for site in manifest.sites:
        if site.token_env and source_key(site.repo.text) == key:
            token = environ.get(site.token_env)
            if not token:
                raise GitError(f"the token variable {site.token_env} (token_env of slot {site.slot}) is not set")
            return token
    return None


def as_written(check: Callable[[str], object], probe: str, text: str) -> Callable[[object], object]:
    """A pattern is checked with its wildcards filled in (`*` -> `x`), and quoted back as it was written."""

    def run(_: object) -> object:
        try:
            return check(probe)
        except DrophostError as exc:
            exc.message = exc.message.replace(probe, text)
            raise

    return run


# -- YAML with line numbers --------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    value: Any  # str | int | float | bool | None | list[_Item] | dict[str, _Item]
    line: int


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors, aliases and deep nesting."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ManifestError("anchors and aliases are not supported", file=self.file, line=line, field=None)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ManifestError(f"is nested deeper than {MAX_DEPTH} levels", file=self.file, line=line, field=None)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ManifestError("is UTF-16 text; save it as UTF-8", file=file, line=None, field=None)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ManifestError(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})", file=file, line=line, field=None
        ) from None


def _compose(text: str, file: str) -> _Item:
    # YAML refuses control characters (even in a comment) as the loader is built, so that is inside the try.
    try:
        loader = _StrictLoader(text, file)
    except yaml.reader.ReaderError as exc:
        at = text.count("\n", 0, exc.position) + 1
        raise ManifestError(
            f"has a control character (U+{exc.character:04X}), which YAML refuses anywhere, comments included"
            if isinstance(exc.character, int)
            else "is not valid YAML text",
            file=file,
            line=at,
            field=None,
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError("is empty", file=file, line=None, field=None)
        return _convert(loader, node, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "is not valid YAML"
        raise ManifestError(f"is not valid YAML: {problem}", file=file, line=line, field=None) from None
    except yaml.YAMLError:
        raise ManifestError("is not valid YAML", file=file, line=None, field=None) from None
    finally:
        loader.dispose()


def _convert(loader: _StrictLoader, node: yaml.Node, file: str) -> _Item:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, _Item] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise ManifestError("keys must be plain names", file=file, line=key_line, field=None)
            key = str(key_node.value)
            if key in result:
                raise ManifestError(
                    f'the key "{key[:60]}" appears twice (first on line {result[key].line})',
                    file=file,
                    line=key_line,
                    field=None,
                )
            value = _convert(loader, value_node, file)
            result[key] = _Item(value.value, key_line if isinstance(value.value, (dict, list)) else value.line)
        return _Item(result, line)
    if isinstance(node, yaml.SequenceNode):
        return _Item([_convert(loader, child, file) for child in node.value], line)
    try:
        return _Item(loader.construct_object(node, deep=True), line)
    except (yaml.YAMLError, ValueError, OverflowError):  # e.g. a 5,000-digit number, or 2024-13-45
        raise ManifestError("has a value that cannot be read", file=file, line=line, field=None) from None


# -- checks --------------------------------------------------------------------------------------
class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, item: _Item | None, field: str, message: str) -> ManifestError:
        return ManifestError(message, file=self.file, line=item.line if item else None, field=field)

    def manifest(self, root: _Item) -> Manifest:
        if not isinstance(root.value, dict):
            raise ManifestError("must be a mapping with a `sites` list", file=self.file, line=root.line, field=None)
        top: dict[str, _Item] = root.value
        self.no_unknown(top, _TOP_KEYS, "")
        sites_item = top.get("sites")
        if sites_item is None:
            raise ManifestError("needs a `sites` list", file=self.file, line=root.line, field="sites")
        if not isinstance(sites_item.value, list):
            raise self.fail(sites_item, "sites", "must be a list of sites")
        if len(sites_item.value) > MAX_SITES:
            raise self.fail(sites_item, "sites", f"has more than {MAX_SITES} entries")
        sites = tuple(self.site(item, index) for index, item in enumerate(sites_item.value))
        self.unique_slots(sites, sites_item.value)
        return Manifest(
            sites=sites,
            allow=self.sources(top.get("sources")),
            poll_interval=self.poll_interval(top.get("poll_interval")),
            file=self.file,
            preview_access=self.previews(top.get("previews")),
            notifications=self.notifications(top.get("notifications")),
        )

    def previews(self, item: _Item | None) -> Access | None:
        if item is None:
            return None
        if not isinstance(item.value, dict):
            raise self.fail(item, "previews", "must be a mapping with an `access` key")
        self.no_unknown(item.value, {"access"}, "previews.")
        access = item.value.get("access")
        if access is None:
            return None
        return self.rules({"access": access}, "previews").access

    def rules(self, fields: dict[str, _Item], where: str) -> SiteOptions:
        """The site rule keys, each checked on its own so an error names its line."""
        given = {key: fields[key] for key in _RULE_KEYS if key in fields}
        for key, item in given.items():
            entries = (
                list(enumerate(item.value))
                if key in ("redirects", "headers") and isinstance(item.value, list)
                else [(None, item)]
            )
            for index, entry in entries:
                data = {key: [_plain(entry)]} if index is not None else {key: _plain(entry)}
                field = f"{where}.{key}" if index is None else f"{where}.{key}[{index}]"
                try:
                    siterules.parse_options(data, file=self.file)
                except RuleError as exc:
                    raise self.fail(entry, field, exc.reason) from None
        try:
            return siterules.parse_options({key: _plain(item) for key, item in given.items()}, file=self.file)
        except RuleError as exc:
            raise self.fail(None, where, exc.reason) from None

    def no_unknown(self, mapping: dict[str, _Item], known: set[str], prefix: str) -> None:
        for key, item in mapping.items():
            if key not in known:
                shown = key if len(key) <= 60 and key.isprintable() else repr(key[:60])
                allowed = ", ".join(sorted(known))
                raise self.fail(item, f"{prefix}{shown}", f"is not a known key (known: {allowed})")

    def text(self, item: _Item, field: str) -> str:
        if not isinstance(item.value, str) or not item.value:
            raise self.fail(item, field, "must be a non-empty text")
        return item.value

    def site(self, item: _Item, index: int) -> SiteSpec:
        where = f"sites[{index}]"
        if not isinstance(item.value, dict):
            raise self.fail(item, where, "must be a mapping with slot and repo")
        fields: dict[str, _Item] = item.value
        self.no_unknown(fields, _SITE_KEYS, f"{where}.")
        for required in ("slot", "repo"):
            if required not in fields:
                raise self.fail(item, f"{where}.{required}", "is required")
        slot = self.slot(fields["slot"], f"{where}.slot")
        repo = self.checked(fields["repo"], f"{where}.repo", lambda v: parse_repo_url(self.text(v, "repo")))
        tags = self.tags(fields, where, slot)
        forks = self.site_previews(fields.get("previews"), f"{where}.previews", slot)
        if PR_FIELD in slot:
            for key in ("branch", "branches"):
                if key in fields:
                    raise self.fail(
                        fields[key],
                        f"{where}.{key}",
                        'does not apply to a "{pr}" site: it previews every pull request of the repository',
                    )
            if repo.is_hosted:
                raise self.fail(
                    fields["repo"], f"{where}.repo", 'hosted repositories have no pull requests: "{pr}" needs a forge'
                )
        branches = (
            () if tags is not None or PR_FIELD in slot else self.branches(fields, where, preview=BRANCH_FIELD in slot)
        )
        path = self.checked(fields.get("path"), f"{where}.path", lambda v: check_repo_path(self.text(v, "path")))
        ttl = self.checked(fields.get("ttl"), f"{where}.ttl", lambda v: parse_ttl(self.scalar(v), maximum=MAX_TTL))
        secret_env = self.env_name(fields.get("webhook_secret_env"), f"{where}.webhook_secret_env")
        token_env = self.env_name(fields.get("token_env"), f"{where}.token_env")
        if token_env and not repo.text.lower().startswith(("https://", "http://")):
            raise self.fail(
                fields["token_env"],
                f"{where}.token_env",
                "is for https repositories (ssh remotes use the deploy key DROPHOST_GIT_SSH_KEY)",
            )
        return SiteSpec(
            slot=slot,
            repo=repo,
            branches=branches,
            path=path or "",
            ttl_seconds=ttl,
            webhook_secret_env=secret_env,
            token_env=token_env,
            build=self.build(fields.get("build"), f"{where}.build"),
            rules=self.rules(fields, where),
            line=item.line,
            index=index,
            tags=tags,
            forks=forks,
            status=self.status(fields.get("status"), f"{where}.status", repo),
        )

    def tags(self, fields: dict[str, _Item], where: str, slot: str) -> str | None:
        item = fields.get("tags")
        if item is None:
            return None
        field = f"{where}.tags"
        for key in ("branch", "branches"):
            if key in fields:
                raise self.fail(item, field, f"use either {key} or tags, not both")
        if BRANCH_FIELD in slot or PR_FIELD in slot:
            raise self.fail(item, field, 'needs a fixed slot (no "{branch}" or "{pr}"): it deploys the newest tag')
        if not isinstance(item.value, str) or not item.value:
            raise self.fail(item, field, 'must be a tag pattern like "v*"')
        text = item.value
        probe = text.replace("**", "x").replace("*", "x").replace("?", "x")
        try:
            check_branch(probe, field="tags")
        except DrophostError:
            shown = text[:80] if text[:80].isprintable() else repr(text[:80])
            raise self.fail(
                item, field, f'"{shown}" is not a valid tag pattern: use letters, digits, ".", "_", "-", "/" and "*"'
            ) from None
        return text

    def site_previews(self, item: _Item | None, field: str, slot: str) -> bool:
        if item is None:
            return False
        if PR_FIELD not in slot:
            raise self.fail(item, field, 'is for a pull-request site, whose slot has "{pr}" in it')
        if not isinstance(item.value, dict):
            raise self.fail(item, field, "must be a mapping with a `forks` key")
        self.no_unknown(item.value, {"forks"}, f"{field}.")
        forks = item.value.get("forks")
        if forks is None:
            return False
        if not isinstance(forks.value, bool):
            raise self.fail(forks, f"{field}.forks", "must be true or false")
        return forks.value

    def build(self, item: _Item | None, field: str) -> BuildSpec | None:
        if item is None:
            return None
        if not isinstance(item.value, dict):
            raise self.fail(item, field, "must be a mapping with command and output")
        fields: dict[str, _Item] = item.value
        self.no_unknown(fields, _BUILD_KEYS, f"{field}.")
        for required in ("command", "output"):
            if required not in fields:
                raise self.fail(item, f"{field}.{required}", "is required")
        output = self.checked(
            fields["output"], f"{field}.output", lambda v: check_repo_path(self.text(v, "output"), field="output")
        )
        if not output:
            raise self.fail(fields["output"], f"{field}.output", "must be a folder inside the site's path, not itself")
        timeout = DEFAULT_BUILD_TIMEOUT
        if "timeout" in fields:
            timeout = int(
                self.checked(
                    fields["timeout"],
                    f"{field}.timeout",
                    lambda v: parse_ttl(self.scalar(v), maximum=MAX_BUILD_TIMEOUT),
                )
            )
        network = fields.get("network")
        if network is not None and not isinstance(network.value, bool):
            raise self.fail(network, f"{field}.network", "must be true or false")
        return BuildSpec(
            command=self.command(fields["command"], f"{field}.command"),
            output=output,
            env=self.build_env(fields.get("env"), f"{field}.env"),
            secrets_env=tuple(
                name
                for i, entry in enumerate(self.list_of(fields.get("secrets_env"), f"{field}.secrets_env"))
                if (name := self.env_name(entry, f"{field}.secrets_env[{i}]"))
            ),
            cache=tuple(
                self.relative_folder(entry, f"{field}.cache[{i}]")
                for i, entry in enumerate(self.list_of(fields.get("cache"), f"{field}.cache"))
            ),
            timeout=timeout,
            network=bool(network.value) if network is not None else False,
        )

    def list_of(self, item: _Item | None, field: str) -> list[_Item]:
        if item is None:
            return []
        if not isinstance(item.value, list):
            raise self.fail(item, field, "must be a list")
        if len(item.value) > 64:
            raise self.fail(item, field, "has more than 64 entries")
        return item.value

    def command_text(self, item: _Item, field: str) -> str:
        if not isinstance(item.value, (str, int, float)) or isinstance(item.value, bool) or item.value == "":
            raise self.fail(item, field, "must be a non-empty text")
        text = str(item.value)
        if len(text) > _BUILD_TEXT_MAX:
            raise self.fail(item, field, f"is longer than {_BUILD_TEXT_MAX} characters")
        if any(ch in text for ch in "\0\r\n"):
            raise self.fail(item, field, "contains a NUL, CR or LF character")
        return text

    def command(self, item: _Item, field: str) -> tuple[str, ...]:
        if isinstance(item.value, str):
            return ("/bin/sh", "-c", self.command_text(item, field))
        entries = self.list_of(item, field)
        if not entries:
            raise self.fail(item, field, "must be a text (run by /bin/sh -c) or a non-empty list of arguments")
        return tuple(self.command_text(entry, f"{field}[{i}]") for i, entry in enumerate(entries))

    def build_env(self, item: _Item | None, field: str) -> tuple[tuple[str, str], ...]:
        if item is None:
            return ()
        if not isinstance(item.value, dict):
            raise self.fail(item, field, "must be a mapping of variable names to values")
        if len(item.value) > 64:
            raise self.fail(item, field, "has more than 64 entries")
        values = []
        for name, value in item.value.items():
            shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60])
            if not _ENV_NAME.fullmatch(name):
                raise self.fail(value, f"{field}.{shown}", "is not a variable name (A-Z, 0-9 and _)")
            if value.value is None:
                raise self.fail(value, f"{field}.{shown}", "must be a text")
            if isinstance(value.value, bool):
                value = _Item("true" if value.value else "false", value.line)
            values.append((name, self.command_text(value, f"{field}.{shown}")))
        return tuple(values)

    def relative_folder(self, item: _Item, field: str) -> str:
        """A folder inside the site's path; dot folders are allowed (".cache/hugo"), escapes are not."""
        text = self.command_text(item, field)
        if text.startswith("/") or "\\" in text:
            raise self.fail(item, field, "must be a folder relative to the site's path")
        parts = text.rstrip("/").split("/")
        if any(part in ("", ".", "..") for part in parts) or not all(part.isprintable() for part in parts):
            raise self.fail(item, field, "escapes the site's path or is not a plain relative folder")
        return "/".join(parts)

    def env_name(self, item: _Item | None, field: str) -> str | None:
        if item is None:
            return None
        name = self.text(item, field)
        if not _ENV_NAME.fullmatch(name):
            raise self.fail(
                item,
                field,
                "must name an environment variable (A-Z, 0-9 and _); the secret itself never goes in this file",
            )
        return name

    def scalar(self, item: _Item) -> str | int:
        if isinstance(item.value, bool) or not isinstance(item.value, (str, int)):
            raise ValueError
        return item.value

    def checked(self, item: _Item | None, field: str, check: Any) -> Any:
        """Run a slots/repourls check on a value and re-raise its message with file, line and field."""
        if item is None:
            return None
        try:
            return check(item)
        except ManifestError:
            raise
        except DrophostError as exc:
            message = exc.message
            for prefix in ("repo ", "branch ", "path ", "ttl ", "output "):
                message = message.removeprefix(prefix)
            raise self.fail(item, field, message) from None
        except ValueError:
            raise self.fail(item, field, "has a value of the wrong type") from None

    def slot(self, item: _Item, field: str) -> str:
        value = item.value if isinstance(item.value, str) else str(item.value)
        shown = value[:80] if value[:80].isprintable() else repr(value[:80])
        template = value.count(BRANCH_FIELD) == 1
        pull = value.count(PR_FIELD) == 1
        if template and pull:
            raise self.fail(item, field, f'"{shown}" has both "{{branch}}" and "{{pr}}": use one of them')
        probe = value.replace(BRANCH_FIELD, "x") if template else value
        # The number a pull request gets is at most 10 digits long: the slot must have room for it.
        probe = probe.replace(PR_FIELD, str(MAX_PR_NUMBER)) if pull else probe
        if probe in RESERVED_SLOTS:
            self.checked(item, field, lambda _: validate_slot(probe))
        if pull and "{" not in probe and "}" not in probe and not is_valid_slot(probe):
            raise self.fail(
                item,
                field,
                f'"{shown}" is not a valid slot template: with a pull-request number of up to 10 digits in place '
                'of "{pr}" it must be 1 to 63 lowercase letters, digits and "-"',
            )
        if not isinstance(item.value, str) or "{" in probe or "}" in probe or not is_valid_slot(probe):
            raise self.fail(
                item,
                field,
                f'"{shown}" is not a valid slot name: use 1 to 63 lowercase letters, digits and "-"'
                + (', with at most one "{branch}" or "{pr}"' if "{" in value else ""),
            )
        return value

    def branches(self, fields: dict[str, _Item], where: str, *, preview: bool) -> tuple[str, ...]:
        if "branch" in fields and "branches" in fields:
            raise self.fail(fields["branches"], f"{where}.branches", "use either branch or branches, not both")
        if "branches" in fields:
            item = fields["branches"]
            if not preview:
                raise self.fail(item, f"{where}.branches", 'several branches need a slot with "{branch}" in it')
            if not isinstance(item.value, list) or not item.value:
                raise self.fail(item, f"{where}.branches", 'must be a list of branch patterns like "feature/*"')
            return tuple(self.pattern(entry, f"{where}.branches[{i}]") for i, entry in enumerate(item.value))
        if "branch" in fields:
            if preview:
                return (self.pattern(fields["branch"], f"{where}.branch"),)
            field = f"{where}.branch"
            return (self.checked(fields["branch"], field, lambda v: check_branch(self.text(v, field))),)
        if preview:
            return ("*",)
        return ("main",)

    def pattern(self, item: _Item, field: str) -> str:
        text = self.text(item, field)
        probe = text.replace("**", "x").replace("*", "x").replace("?", "x")
        self.checked(item, field, as_written(check_branch, probe, text))
        return text

    def unique_slots(self, sites: tuple[SiteSpec, ...], items: list[_Item]) -> None:
        seen: dict[str, SiteSpec] = {}
        for site in sites:
            first = seen.get(site.slot)
            if first is not None:
                raise self.fail(
                    items[site.index],
                    f"sites[{site.index}].slot",
                    f'"{site.slot}" is already declared by sites[{first.index}] (line {first.line})',
                )
            seen[site.slot] = site

    def sources(self, item: _Item | None) -> tuple[str, ...]:
        if item is None:
            return ()
        if not isinstance(item.value, dict):
            raise self.fail(item, "sources", "must be a mapping with an `allow` list")
        self.no_unknown(item.value, {"allow"}, "sources.")
        allow = item.value.get("allow")
        if allow is None:
            return ()
        if not isinstance(allow.value, list):
            raise self.fail(allow, "sources.allow", "must be a list of URL patterns")
        patterns = []
        for i, entry in enumerate(allow.value):
            field = f"sources.allow[{i}]"
            text = self.text(entry, field)
            self.checked(entry, field, as_written(parse_repo_url, text.replace("*", "x"), text))
            if text.startswith("hosted:"):
                raise self.fail(entry, field, "hosted repositories are declared as sites, not allowed by pattern")
            patterns.append(text)
        return tuple(patterns)

    def poll_interval(self, item: _Item | None) -> int | None:
        if item is None:
            return None
        if item.value == 0:
            return 0
        return int(self.checked(item, "poll_interval", lambda v: parse_ttl(self.scalar(v), maximum=7 * 86400)))

    # -- feedback: status and notifications (issue 17) ------------------------------------------
    def url(self, item: _Item, field: str, *, query: bool = True) -> str:
        try:
            return feedback.check_url(item.value, query=query)
        except ValueError as exc:
            raise self.fail(item, field, str(exc)) from None

    def choice(self, item: _Item, field: str, choices: tuple[str, ...]) -> str:
        if not isinstance(item.value, str) or item.value not in choices:
            raise self.fail(item, field, f"must be one of {', '.join(choices)}")
        return item.value

    def status(self, item: _Item | None, field: str, repo: RepoUrl) -> StatusSpec | None:
        if item is None:
            return None
        if not isinstance(item.value, dict):
            raise self.fail(item, field, "must be a mapping with provider and token_env")
        fields: dict[str, _Item] = item.value
        self.no_unknown(fields, _STATUS_KEYS, f"{field}.")
        for required in ("provider", "token_env"):
            if required not in fields:
                raise self.fail(item, f"{field}.{required}", "is required")
        provider = self.choice(fields["provider"], f"{field}.provider", feedback.PROVIDERS)
        api_item = fields.get("api_url")
        api_url = self.url(api_item, f"{field}.api_url", query=False) if api_item is not None else None
        token_env = self.env_name(fields["token_env"], f"{field}.token_env")
        assert token_env is not None
        if repo.is_hosted:
            raise self.fail(item, field, "needs a repository on a forge (a hosted repository has no commit statuses)")
        project = forge_project(repo)
        if project is None or (provider != "gitlab" and project.count("/") != 1):
            shown = repo.shown[:80] if project is None else project[:80]
            wanted = f'{provider} statuses need a repository URL ending in owner/repo, not "{shown}"'
            raise self.fail(item, field, wanted)
        return StatusSpec(
            provider=provider,
            api_url=api_url or feedback.DEFAULT_API_URLS[provider],
            token_env=token_env,
            project=project,
        )

    def notifications(self, item: _Item | None) -> tuple[Notifier, ...]:
        entries = self.list_of(item, "notifications")
        if len(entries) > MAX_NOTIFICATIONS:
            raise self.fail(item, "notifications", f"has more than {MAX_NOTIFICATIONS} entries")
        return tuple(self.notifier(entry, f"notifications[{i}]") for i, entry in enumerate(entries))

    def notifier(self, item: _Item, where: str) -> Notifier:
        if not isinstance(item.value, dict):
            raise self.fail(item, where, "must be a mapping with url, format and events")
        fields: dict[str, _Item] = item.value
        self.no_unknown(fields, _NOTIFICATION_KEYS, f"{where}.")
        for required in ("url", "format", "events"):
            if required not in fields:
                raise self.fail(item, f"{where}.{required}", "is required")
        fmt = self.choice(fields["format"], f"{where}.format", feedback.FORMATS)
        events_item = fields["events"]
        if not isinstance(events_item.value, list) or not events_item.value:
            raise self.fail(events_item, f"{where}.events", f"must be a list of events: {', '.join(feedback.EVENTS)}")
        events = [self.choice(e, f"{where}.events[{i}]", feedback.EVENTS) for i, e in enumerate(events_item.value)]
        secret_env = self.env_name(fields.get("secret_env"), f"{where}.secret_env")
        if secret_env and fmt != "json":
            raise self.fail(
                fields["secret_env"],
                f"{where}.secret_env",
                "signs json bodies only; a slack, matrix or teams webhook is authenticated by its own URL",
            )
        slots = []
        for i, entry in enumerate(self.list_of(fields.get("slots"), f"{where}.slots")):
            if not isinstance(entry.value, str) or not _SLOT_GLOB.fullmatch(entry.value):
                raise self.fail(
                    entry, f"{where}.slots[{i}]", 'must be a slot name or a pattern like "docs-*" (a-z, 0-9, -, *, ?)'
                )
            slots.append(entry.value)
        return Notifier(
            url=self.url(fields["url"], f"{where}.url"),
            format=fmt,
            events=tuple(dict.fromkeys(events)),
            secret_env=secret_env,
            slots=tuple(slots),
        )


def forge_project(repo: RepoUrl) -> str | None:
    """ "https://github.com/owner/repo.git" (or ssh://, or git@host:owner/repo) -> "owner/repo"."""
    if repo.is_hosted:
        return None
    text = repo.shown
    if "://" in text:
        path = text.split("://", 1)[1].partition("/")[2]
    else:
        path = text.partition(":")[2]
    path = path.split("?", 1)[0].strip("/").removesuffix(".git").strip("/")
    parts = path.split("/")
    if len(parts) < 2 or any(not part or part in (".", "..") for part in parts):
        return None
    return path


def _plain(item: _Item) -> Any:
    """The value without line numbers."""
    if isinstance(item.value, dict):
        return {key: _plain(value) for key, value in item.value.items()}
    if isinstance(item.value, list):
        return [_plain(value) for value in item.value]
    return item.value
