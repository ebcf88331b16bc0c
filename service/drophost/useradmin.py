"""`drophost user add|list|remove`: users managed on the server itself, straight in PostgreSQL.

Not through the API: the first admin must be added before anyone but the bootstrap token can sign
in, and a server run by `drophost serve` has no token file to borrow. DATABASE_URL, or else the
private cluster of `drophost up`'s data directory, is the same database the service uses; the
schema is migrated first, so it works before the service's first start too.
"""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
from typing import IO

import psycopg

from drophost import access
from drophost.errors import DrophostError, ValidationError
from drophost.localdb import LocalPostgres
from drophost.settings import Settings
from drophost.store import audit, users
from drophost.store.migrate import migrate


def database_url(settings: Settings) -> str:
    return settings.database_url or LocalPostgres(settings.data_dir / "postgres").dsn


def manage_users(args: argparse.Namespace, settings: Settings, stdin: IO[str], out: IO[str]) -> int:
    try:
        conn = psycopg.connect(database_url(settings), autocommit=True)
    except psycopg.OperationalError as exc:
        raise DrophostError(f"PostgreSQL could not be reached (is `drophost up` running?): {exc}") from None
    actor = f"cli:{_os_user()}"
    with conn:
        migrate(conn)
        if args.user_command == "list":
            for row in users.list_users(conn):
                print(f"{row['name']}  {row['role']}  {' '.join(row['slots'])}".rstrip(), file=out)
            return 0
        name = access.check_user_name(args.name)
        if args.user_command == "remove":
            removed = users.delete_user(conn, name)
            audit.record(
                conn, actor=actor, action="delete_user", target=f"user {name}", result="200" if removed else "404"
            )
            print(f"removed {name}" if removed else f"there is no user {name}", file=out)
            return 0 if removed else 1
        role = access.check_role(args.role)
        patterns = [access.check_pattern(p) for p in args.slots]
        if patterns and role != "deployer":
            raise ValidationError("only a deployer has --slots (an admin has every slot, a viewer none)")
        password = _read_password(args.password_stdin, stdin)
        users.add_user(conn, name=name, role=role, slots=patterns, password_hash=access.hash_password(password))
        audit.record(conn, actor=actor, action="create_user", target=f"user {name}", result="201")
        print(f"added {name} ({role}{': ' + ', '.join(patterns) if patterns else ''})", file=out)
    return 0


def _read_password(from_stdin: bool, stdin: IO[str]) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValidationError("the two passwords differ")
    return first


def _os_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
