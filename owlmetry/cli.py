"""The `owlmetry` command: serve, migrate, and the management commands of the contract.

Owns argument parsing and turning every failure into one line on stderr and exit code 1
(argparse's own usage errors exit 2). Output meant for scripts goes to stdout: one value, or
JSON. Must not hold business rules: it calls the store and the auth module like a route does.
"""

import argparse
import asyncio
import datetime
import logging
import os
import sys
from contextlib import asynccontextmanager

import orjson

from owlmetry import __version__
from owlmetry import config as configuration
from owlmetry.clock import iso_ms, now_ms
from owlmetry.config import Config, ConfigError
from owlmetry.credentials import API_KEY_KINDS, UserTokens, create_api_key, signing_secret
from owlmetry.emails import normalize_email
from owlmetry.http.delivery_status import removal_json
from owlmetry.ids import new_id, normalize_id
from owlmetry.notify.channels import channel_types, check_content
from owlmetry.notify.dispatcher import dispatcher_for, enqueue
from owlmetry.retention import clean_up
from owlmetry.serve_lock import AlreadyServing, hold_serve_lock
from owlmetry.store import (
    RECORDED_OUTCOMES,
    DeliveryStatus,
    EmailTaken,
    NotificationContent,
    Progress,
    StoreError,
    open_store,
    sqlite_path,
)

DEFAULT_NOTIFICATION_TYPE = "message"


class CommandError(Exception):
    """A failure to report in one line, without a traceback."""


def email_argument(text: str) -> str:
    try:
        return normalize_email(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return value


def json_object(text: str) -> dict:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
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

    backup = commands.add_parser(
        "backup", parents=[database], help="copy a SQLite database to a new file while it runs",
        description="Write a consistent copy of the SQLite database to FILE (which must not "
                    "exist) while the server keeps running; print FILE's path. PostgreSQL "
                    "databases are backed up with pg_dump.")
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(run=backup_command)

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
    revoke_sessions = users.add_parser(
        "revoke-sessions", parents=[database], help="end every session of a user, print its id",
        description="End every session (token) of the user issued until now: from the next "
                    "request a running server answers them 401 (another server process within "
                    "a second). Print the user's id.")
    revoke_sessions.add_argument("email", type=email_argument)
    revoke_sessions.set_defaults(run=revoke_sessions_command)
    delete_user = users.add_parser(
        "delete", parents=[database], help="delete a user and everything of theirs, print its id",
        description="Delete the user with their devices, inbox, deliveries, answers' records and "
                    "scheduled recipients; their tokens answer 401 from then on. Print the "
                    "user's id.")
    delete_user.add_argument("email", type=email_argument)
    delete_user.set_defaults(run=delete_user_command)
    unlock = users.add_parser("unlock", parents=[database],
                              help="forget an email's wrong login codes (its lock and delays)")
    unlock.add_argument("email", type=email_argument)
    unlock.set_defaults(run=unlock_command)

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

    notify = commands.add_parser(
        "notify", parents=[database],
        help="notify users on every channel; print the notification ids",
        description="Enqueue one notification per user and print their ids, one per line. "
                    "A running server delivers them; with --wait this command delivers them "
                    "itself, shows progress on stderr and prints a JSON summary of the devices.")
    notify.add_argument("--user", dest="users", action="append", required=True,
                        metavar="EMAIL_OR_ID", help="a recipient (repeat for more)")
    notify.add_argument("--title", required=True)
    notify.add_argument("--body")
    notify.add_argument("--link")
    notify.add_argument("--type", default=DEFAULT_NOTIFICATION_TYPE,
                        help=f"default: {DEFAULT_NOTIFICATION_TYPE}")
    notify.add_argument("--data", type=json_object, metavar="JSON",
                        help="a JSON object sent with the push")
    notify.add_argument("--wait", action="store_true",
                        help="deliver now and wait until every delivery has an outcome")
    notify.set_defaults(run=notify_command)

    cleanup = commands.add_parser(
        "cleanup", parents=[database], help="run the retention's clean-up once; print JSON counts",
        description="Soft-delete notifications read more than RETENTION_READ_DAYS ago, remove "
                    "those deleted more than RETENTION_DELETED_DAYS ago (with their deliveries "
                    "and push records), prune expired login codes and idempotency keys older "
                    "than IDEMPOTENCY_KEY_HOURS, in small batches; print JSON "
                    '{"soft_deleted", "removed", "login_codes", "idempotency_keys", "device_removals"}. `serve` '
                    "does the same every hour.")
    cleanup.set_defaults(run=cleanup_command)

    devices = commands.add_parser("devices", help="the device registry").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    removed = devices.add_parser(
        "removed", parents=[database],
        help="list devices removed because of a provider's answer, as JSON lines",
        description="One JSON object per line, oldest first, for every device removed because "
                    "of APNs' or FCM's answer (dead tokens), kept RETENTION_DELETED_DAYS: "
                    "device, user, channel, platform, environment, the token's first "
                    "characters, notification, the provider's status, reason and timestamp, "
                    "and when.")
    removed.add_argument("--since", metavar="ISO8601",
                         help="only devices removed at or after this time (UTC unless it says)")
    removed.set_defaults(run=removed_devices_command)
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


async def backup_command(config: Config, args) -> str:
    store = await open_store(config.database_url)
    try:
        await store.backup(args.file)
    finally:
        await store.close()
    return os.path.abspath(args.file)


async def create_user_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        try:
            user = await store.create_user(new_id(), args.email, now_ms())
        except EmailTaken as exc:
            raise CommandError(str(exc)) from None
        return user.id


async def unlock_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        had = await store.unlock_login(args.email)
    return "unlocked" if had else "no wrong codes on record"


async def user_token_command(config: Config, args) -> str:
    secret = signing_secret(config)
    async with migrated_store(config) as store:
        user = await store.user_by_email(args.email)
        if user is None:
            raise CommandError(f"no user with email {args.email!r}")
        return UserTokens(secret).issue(user.id, user.email, args.ttl)


async def revoke_sessions_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        user = await store.user_by_email(args.email)
        if user is None:
            raise CommandError(f"no user with email {args.email!r}")
        await store.end_all_sessions(user.id, now_ms())
        return user.id


async def delete_user_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        user = await store.user_by_email(args.email)
        if user is None or not await store.delete_user(user.id):
            raise CommandError(f"no user with email {args.email!r}")
        return user.id


async def create_key_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        _, secret = await create_api_key(store, new_id(), args.kind, args.name, now_ms())
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


async def notify_command(config: Config, args) -> str:
    content = NotificationContent(args.type, args.title, args.body, args.link, args.data)
    try:
        check_content(content, config)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    async with migrated_store(config) as store:
        user_ids = [await recipient_id(store, user) for user in args.users]
        ids = await enqueue(store, user_ids, content, channel_types(),
                            config.notification_defaults)
        if not args.wait:
            return "\n".join(ids)
        print("\n".join(ids), flush=True)
        dispatcher = dispatcher_for(store, config, only=ids)
        dispatcher.start()
        try:
            progress = await show_progress(store, ids)
        finally:
            await dispatcher.stop()
        return orjson.dumps({"notifications": len(ids), **summary(progress)}).decode()


async def cleanup_command(config: Config, args) -> str:
    async with migrated_store(config) as store:
        cleaned = await clean_up(store, config, now_ms())
    if cleaned is None:
        raise CommandError("another process is running the clean-up now; nothing was done")
    return orjson.dumps(cleaned.as_dict()).decode()


async def recipient_id(store, user: str) -> str:
    """The id of the user named by email or id; CommandError before anything is enqueued."""
    if "@" in user:
        try:
            found = await store.user_by_email(normalize_email(user))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if found is not None:
            return found.id
    elif (user_id := normalize_id(user)) is not None and await store.user_exists(user_id):
        return user_id
    raise CommandError(f"no user {user!r}")


def summary(progress: Progress) -> dict:
    """What became of the devices: delivered, removed (dead tokens), failed, skipped."""
    return {outcome.value: progress.pushes.get(outcome, 0) for outcome in RECORDED_OUTCOMES}


async def show_progress(store, ids: list[str]) -> Progress:
    """Poll until no delivery is pending, drawing a bar on stderr when it is a terminal."""
    draw = sys.stderr.isatty()
    while True:
        progress = await store.progress(ids)
        if draw:
            total = sum(progress.deliveries.values()) or 1
            finished = total - progress.deliveries.get(DeliveryStatus.PENDING, 0)
            filled = round(30 * finished / total)
            counts = " ".join(f"{k} {v}" for k, v in summary(progress).items())
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {finished}/{total} deliveries  {counts}",
                  end="", file=sys.stderr, flush=True)
        if progress.done:
            if draw:
                print(file=sys.stderr)
            return progress
        await asyncio.sleep(0.2)


def serve_command(config: Config, args) -> None:
    from owlmetry.http import access_log, serving
    from owlmetry.http.app import create_app
    from owlmetry.http.protocol import Timeouts

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (path := sqlite_path(config.database_url)) is not None:
        try:
            hold_serve_lock(path)  # until this process ends
        except AlreadyServing as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot lock the SQLite database {path!r}: {exc.strerror}") from None
    if config.access_log:
        access_log.write_to_stdout()
    loop = new_event_loop()
    try:
        serving.run_app(
            create_app(config), host=config.host, port=config.port, loop=loop,
            shutdown_timeout=config.shutdown_grace_s,
            timeouts=Timeouts(config.client_header_timeout_s, config.client_body_timeout_s),
            **access_log.runner_options(config.access_log),
            print=lambda _: print(
                f"owlmetry {__version__} listening on http://{config.host}:{config.port}", flush=True
            ),
        )
    except serving.CannotListen as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # anything else the start-up could not do
        raise CommandError(f"cannot start: {exc}") from None


def parse_since(text: str | None) -> int:
    if text is None:
        return 0
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


REMOVALS_PAGE = 1_000


def removed_devices_command(config: Config, args) -> None:
    """Prints as it reads, a page at a time: the list can be long."""
    since = parse_since(args.since)

    async def run() -> None:
        async with migrated_store(config) as store:
            after_ms, after_id = since, ""
            while True:
                page = await store.device_removals(after_ms, after_id, REMOVALS_PAGE)
                for removal in page:
                    sys.stdout.write(orjson.dumps(removal_json(removal)).decode() + "\n")
                if len(page) < REMOVALS_PAGE:
                    return
                after_ms, after_id = page[-1].removed_at, page[-1].device_id

    asyncio.run(run())


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
