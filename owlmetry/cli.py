"""The `owlmetry` command: serve, migrate, and the management commands of the contract.

Owns argument parsing and turning every failure into one line on stderr and exit code 1
(argparse's own usage errors exit 2). Output meant for scripts goes to stdout: one value, or
JSON. Must not hold business rules: it calls the store and the auth module like a route does.
"""

import argparse
import asyncio
import logging
import re
import sys
from contextlib import asynccontextmanager

import orjson

from owlmetry import __version__
from owlmetry import config as configuration
from owlmetry.clock import iso_ms, now_ms
from owlmetry.config import Config, ConfigError
from owlmetry.http.auth import (
    API_KEY_KINDS,
    UserTokens,
    hash_api_key,
    jwt_secret,
    new_api_key,
)
from owlmetry.ids import new_id
from owlmetry.store import EmailTaken, StoreError, open_store

EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class CommandError(Exception):
    """A failure to report in one line, without a traceback."""


def email_argument(text: str) -> str:
    if len(text) > 254 or not EMAIL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not an email address: {text!r}")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="owlmetry", description="Owlmetry push service")
    parser.add_argument("--version", action="version", version=f"owlmetry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database", metavar="URL",
        help="sqlite:///path or postgresql://... (default: $DATABASE_URL, else sqlite:///owlmetry.db)",
    )

    serve = commands.add_parser("serve", parents=[database], help="run the HTTP server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.set_defaults(run=serve_command)

    migrate = commands.add_parser("migrate", parents=[database], help="create or upgrade the schema")
    migrate.set_defaults(run=migrate_command)

    users = commands.add_parser("users", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create_user = users.add_parser("create", parents=[database], help="create a user, print its id")
    create_user.add_argument("email", type=email_argument)
    create_user.set_defaults(run=create_user_command)
    token = users.add_parser("token", parents=[database], help="print a JWT for a user")
    token.add_argument("email", type=email_argument)
    token.add_argument("--ttl", type=positive_int, metavar="SECONDS",
                       help="lifetime of the token (default: no expiry)")
    token.set_defaults(run=user_token_command)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create_key = keys.add_parser("create", parents=[database], help="create an API key, print it")
    create_key.add_argument("--kind", required=True, choices=API_KEY_KINDS)
    create_key.add_argument("--name", help="a label to recognise the key by")
    create_key.set_defaults(run=create_key_command)
    list_keys = keys.add_parser("list", parents=[database], help="list API keys as JSON (no secrets)")
    list_keys.set_defaults(run=list_keys_command)
    revoke_key = keys.add_parser("revoke", parents=[database], help="revoke an API key by id")
    revoke_key.add_argument("key_id", metavar="ID")
    revoke_key.set_defaults(run=revoke_key_command)
    return parser


@asynccontextmanager
async def migrated_store(config: Config):
    store = await open_store(config.database_url)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


async def migrate_command(config: Config, args) -> str:
    async with migrated_store(config):
        return "ok"


async def create_user_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        try:
            user = await store.create_user(new_id(), args.email, now_ms())
        except EmailTaken as exc:
            raise CommandError(str(exc)) from None
        return user.id


async def user_token_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        user = await store.user_by_email(args.email)
        if user is None:
            raise CommandError(f"no user with email {args.email!r}")
        tokens = UserTokens(await jwt_secret(store, config.jwt_secret))
        return tokens.issue(user.id, user.email, args.ttl)


async def create_key_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        secret = new_api_key(args.kind)
        await store.create_api_key(new_id(), args.kind, args.name, hash_api_key(secret), now_ms())
        return secret


async def list_keys_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        keys = await store.list_api_keys()
    return orjson.dumps([
        {"id": key.id, "kind": key.kind, "name": key.name, "created_at": iso_ms(key.created_at),
         "revoked_at": iso_ms(key.revoked_at) if key.revoked_at is not None else None}
        for key in keys
    ]).decode()


async def revoke_key_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        if not await store.revoke_api_key(args.key_id, now_ms()):
            raise CommandError(f"no active API key with id {args.key_id!r}")
        return args.key_id


def serve_command(config: Config, args) -> None:
    from aiohttp import web

    from owlmetry.http.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = new_event_loop()
    try:
        web.run_app(
            create_app(config), host=config.host, port=config.port, loop=loop,
            access_log=logging.getLogger("aiohttp.access") if config.access_log else None,
            print=lambda _: print(
                f"owlmetry {__version__} listening on http://{config.host}:{config.port}", flush=True
            ),
        )
    except OSError as exc:
        raise CommandError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = configuration.from_env().with_flags(
            database_url=args.database,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
        )
        if asyncio.iscoroutinefunction(args.run):
            print(asyncio.run(args.run(config, args)))
        else:
            args.run(config, args)
    except (CommandError, ConfigError, StoreError) as exc:
        print(f"owlmetry: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
