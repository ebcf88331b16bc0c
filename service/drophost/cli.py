"""The `drophost` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from drophost import __version__
from drophost.client import commands
from drophost.errors import DrophostError

if TYPE_CHECKING:
    from drophost.settings import Settings


def top_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = parser_class(prog="drophost", description="Self-hosted static-site deployer.")
    parser.add_argument("--version", action="version", version=f"drophost {__version__}")
    return parser


def build_parser() -> argparse.ArgumentParser:
    # access (roles, hashes, dataclasses) only for `user add`: a client command never builds this parser.
    from drophost.access import ROLES

    parser = top_parser()
    subcommands = parser.add_subparsers(dest="command", required=True)

    up = subcommands.add_parser("up", help="run PostgreSQL, nginx and the service in the foreground")
    up.add_argument("--data-dir", help="where everything is kept (default: /var/lib/drophost as root)")
    up.add_argument("--port", type=int, help="the public port (default 8080)")
    up.add_argument("--host", help="the address to listen on (default 127.0.0.1)")
    up.add_argument("--sites-port", type=int, help="the port the sites are served on (default the port + 1)")
    up.add_argument("--config", help="the deploy.yaml to apply (default: $DROPHOST_CONFIG)")
    up.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM; see `drophost tls init`)")
    up.add_argument("--tls-key", help="the certificate's private key (PEM)")

    tls_parser = subcommands.add_parser("tls", help="HTTPS for a LAN: a local certificate authority")
    tls_commands = tls_parser.add_subparsers(dest="tls_command", required=True)
    tls_init = tls_commands.add_parser(
        "init", help="make a local authority (once) and a certificate for this host and the sites"
    )
    tls_init.add_argument("--data-dir", help="where `drophost up` keeps its state (the files go to <data>/tls/)")
    tls_init.add_argument(
        "--name", action="append", default=[], help="another host name or IP address to cover (repeatable)"
    )

    check = subcommands.add_parser("check", help="validate a deploy.yaml")
    check.add_argument("file", nargs="?", help="default: $DROPHOST_CONFIG or ./deploy.yaml")
    check.add_argument(
        "--strict", action="store_true", help="a *_env variable not set in this shell is an error, not a warning"
    )

    plan = subcommands.add_parser("plan", help="show what applying a deploy.yaml would change against what is live")
    plan.add_argument("file", nargs="?", help="default: $DROPHOST_CONFIG or ./deploy.yaml")
    plan.add_argument("--data-dir", help="where `drophost up` keeps its state (for the API token)")
    plan.add_argument(
        "--server", help="ask this DropHost over HTTP (env DROPHOST_URL); default: the local `drophost up`"
    )
    plan.add_argument("--token", help="the API token for --server (env DROPHOST_API_TOKEN)")
    plan.add_argument("--config", help="client config file (default ~/.config/drophost/cli.ini)")

    user = subcommands.add_parser(
        "user", help="manage users on this server (through PostgreSQL: works before anyone can sign in)"
    )
    user_commands = user.add_subparsers(dest="user_command", required=True)
    user_add = user_commands.add_parser("add", help="add a user; the password is asked for (or read from stdin)")
    user_add.add_argument("name")
    user_add.add_argument("--role", required=True, choices=ROLES)
    user_add.add_argument("--slots", action="append", default=[], help='a deployer\'s slot pattern, e.g. "docs-*"')
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user_commands.add_parser("list", help="every user")
    user_remove = user_commands.add_parser("remove", help="remove a user and their tokens")
    user_remove.add_argument("name")
    for user_parser in user_commands.choices.values():
        user_parser.add_argument("--data-dir", help="`drophost up`'s data directory (its private PostgreSQL)")

    commands.add_commands(subcommands)

    serve = subcommands.add_parser("serve", help="run only the service (PostgreSQL and nginx run elsewhere)")
    serve.add_argument("--listen-host", default="127.0.0.1")
    serve.add_argument("--listen-port", type=int, default=8000)
    serve.add_argument("--uds", help="listen on this unix socket instead (how `drophost up` runs the service)")
    builder = subcommands.add_parser(
        "builder", help="run builds for a service elsewhere (DROPHOST_BUILDER_URL; Docker Compose's builder)"
    )
    builder.add_argument("--listen-host", default="127.0.0.1")
    builder.add_argument("--listen-port", type=int, default=8090)
    return parser


class _NotOnlyThisCommand(Exception):
    """What a parser of one client command raises instead of printing an error (see parse_arguments)."""


class _OneCommandParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotOnlyThisCommand(message)


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments, parsed by a parser holding only the client command named first, when that parse
    succeeds: building every command's parser cost ~10 ms of each `drophost deploy`. Anything else
    (an error, another command, --help at the top) goes through the whole parser, so its messages,
    usage lines and exit codes are the ones the whole parser gives."""
    if argv and argv[0] in commands.COMMANDS:
        parser = top_parser(_OneCommandParser)
        commands.add_commands(parser.add_subparsers(dest="command", required=True), only=argv[0])
        try:
            return parser.parse_args(argv)
        except _NotOnlyThisCommand:
            pass
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else list(argv))
    try:
        code = run_command(args)
        sys.stdout.flush()
    except BrokenPipeError:
        end_on_broken_pipe()
    return code


def run_command(args: argparse.Namespace) -> int:
    if args.command in commands.COMMANDS:
        return commands.run(args, os.environ, sys.stdout, sys.stderr)
    # Server imports stay here and in the branches: a client command (`drophost deploy`) imports
    # neither logging nor settings, tls or access (about 40 ms of its ~100 ms of imports).
    import logging

    from drophost import hangup, tls
    from drophost.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "up":
            from drophost.up import up

            settings = Settings.from_env(
                os.environ,
                data_dir=args.data_dir,
                port=args.port,
                host=args.host,
                sites_port=args.sites_port,
                config=args.config,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
            )
            return up(settings)
        if args.command == "tls":
            settings = Settings.from_env(os.environ, data_dir=args.data_dir)
            names = tls.default_names(settings.host, settings.sites_host) + list(args.name)
            files = tls.init(settings.tls_dir, names, timeout=settings.subprocess_timeout)
            print(tls.trust_instructions(files, names))
            return 0
        if args.command == "check":
            from drophost.gitops.check import check

            settings = Settings.from_env(os.environ)
            return check(config_file(args.file, settings), os.environ, strict=args.strict)
        if args.command == "plan":
            from drophost.gitops.check import show_plan

            settings = Settings.from_env(os.environ, data_dir=args.data_dir)
            if commands.wants_remote_plan(args, os.environ):
                return commands.plan_remote(config_file(args.file, settings), args, os.environ, sys.stdout, sys.stderr)
            return show_plan(config_file(args.file, settings), settings)
        if args.command == "user":
            from drophost.useradmin import manage_users

            settings = Settings.from_env(os.environ, data_dir=args.data_dir)
            return manage_users(args, settings, sys.stdin, sys.stdout)
        if args.command == "serve":
            import uvicorn

            from drophost.web.app import create_app

            # A SIGHUP before the app installs its handler is applied once it has (hangup.py).
            signal.signal(signal.SIGHUP, hangup.remember)
            settings = Settings.from_env(os.environ)
            app = create_app(settings)
            if args.uds:
                uvicorn.run(app, uds=args.uds, log_level="info", lifespan="on", access_log=False)
            else:
                uvicorn.run(app, host=args.listen_host, port=args.listen_port, access_log=False)
            return 0
        if args.command == "builder":
            from drophost.pipeline.remotebuild import serve as serve_builds

            serve_builds(Settings.from_env(os.environ), args.listen_host, args.listen_port)
            return 0
    except DrophostError as exc:
        print(f"drophost: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def end_on_broken_pipe() -> NoReturn:
    """The reader of our output went away (`drophost list | head -2`): end as other commands do, by SIGPIPE.

    Only here: a SIGPIPE left at its default for the whole run would also kill the CLI when the
    server closes an upload's connection, instead of reporting the server's answer.
    """
    # Python would try to flush stdout again at exit and print a second traceback.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    raise SystemExit(128 + signal.SIGPIPE)  # not reached: the signal ends the process


def config_file(given: str | None, settings: Settings) -> str:
    """The deploy.yaml to read: the one named on the command line, else DROPHOST_CONFIG's, else ./deploy.yaml."""
    return given or settings.config or "deploy.yaml"


__all__ = ["main", "build_parser"]
