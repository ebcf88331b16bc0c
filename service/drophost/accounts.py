"""The system users of `drophost up` as root, and who owns what in the data directory.

Three users, so that no part can change what another serves:
- drophost      owns the data directory (releases, live/ links, nginx's config) and runs the service;
- drophost-web  runs nginx's workers: it can read releases and links and write nothing but nginx's
                temporary files;
- drophost-db   runs PostgreSQL: it owns <data>/postgres and nothing else; the service reaches its
                socket through the group drophost.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from drophost import runner

SERVICE_USER = "drophost"
WEB_USER = "drophost-web"
DB_USER = "drophost-db"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def group(self) -> str:
        return grp.getgrgid(self.gid).gr_name


@dataclass(frozen=True)
class Accounts:
    service: Account
    web: Account
    db: Account
    created: tuple[str, ...] = ()  # the users this run had to create (said, never done quietly)


def ensure_user(name: str, home: Path) -> Account:
    """The system user `name` (created without a login shell or home directory if missing)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        argv = ["useradd", "--system", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin"]
        runner.run([*argv, "--user-group", name], timeout=30)
        entry = pwd.getpwnam(name)
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def ensure_accounts(data_dir: Path) -> Accounts:
    missing = tuple(name for name in (SERVICE_USER, WEB_USER, DB_USER) if not _exists(name))
    return Accounts(
        service=ensure_user(SERVICE_USER, data_dir),
        web=ensure_user(WEB_USER, data_dir / "nginx"),
        db=ensure_user(DB_USER, data_dir / "postgres"),
        created=missing,
    )


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


ROOT = Account(name="root", uid=0, gid=0)


# What the service and PostgreSQL write themselves, under their own users: once a tree was handed
# to the same accounts, what is added to it later is theirs already. Walking them at every start
# cost minutes with 200,000 releases (an lchown per file), for nothing.
OWNERS_FILE = ".owners"
BULK_TREES = ("releases", "store", "git", "builds", "live")


def apply_ownership(data_dir: Path, service: Account, db: Account) -> None:
    """Hand the data directory to the user the service runs as, the cluster to the database user.

    The service's own user must own what it writes: git refuses to work in a repository another user
    owns ("dubious ownership"), so a service that keeps root keeps the data root's. <data>/tls stays
    root's (nginx's master reads the key as root); nginx's temporary folders are handed to its worker
    user by nginx itself at start.

    The first start with these accounts walks everything; later ones walk what `drophost up` itself
    writes as root (nginx's config, pages, the token) and only the top of the bulk trees, unless a
    folder there has another owner (then that tree is walked again).
    """
    marker = data_dir / OWNERS_FILE
    handed = owners_record(service, db)
    known = read_marker(marker) == handed
    bulk = {data_dir / name for name in BULK_TREES} if known else set()
    own_tree(data_dir, service, skip={data_dir / "postgres", data_dir / "tls", data_dir / "nginx" / "tmp"} | bulk)
    for tree in sorted(bulk):
        if tree.exists() and not owned_on_top(tree, service):
            own_tree(tree, service, skip=set())
    postgres = data_dir / "postgres"
    if postgres.exists():
        if not (known and owned_on_top(postgres, db)):
            own_tree(postgres, db, skip=set())
        os.chmod(postgres, 0o700)
    if not known:
        marker.write_text(handed)


def owners_record(service: Account, db: Account) -> str:
    return f"service {service.uid}:{service.gid}\ndb {db.uid}:{db.gid}\n"


def read_marker(marker: Path) -> str:
    try:
        return marker.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def owned_on_top(tree: Path, account: Account) -> bool:
    """Whether `tree` and the entries directly in it belong to `account`."""
    if not owned_by(tree, account):
        return False
    with os.scandir(tree) as entries:
        return all(owned_by(Path(entry.path), account) for entry in entries)


def owned_by(path: Path, account: Account) -> bool:
    info = path.lstat()
    return (info.st_uid, info.st_gid) == (account.uid, account.gid)


def own_tree(root: Path, account: Account, *, skip: set[Path]) -> None:
    os.lchown(root, account.uid, account.gid)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in dirs + files:
            if here / name in skip:
                continue
            os.lchown(here / name, account.uid, account.gid)
