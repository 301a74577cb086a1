"""Configuration: environment variables (the Owlmetry server's names) overridden by flags.

Owns reading and checking every setting, so that a bad value stops the process at start-up
with a message naming the variable. Must not open connections or read the database.
"""

import ipaddress
import os
import ssl
import urllib.parse
from dataclasses import dataclass, field, replace
from email.utils import parseaddr

from owlmetry.apns.token import check_signing_key
from owlmetry.fcm.service_account import ServiceAccount, ServiceAccountError, parse_service_account
from owlmetry.login_codes import SENDS_PER_ADDRESS, VERIFIES_PER_ADDRESS
from owlmetry.origins import parse_origin
from owlmetry.preferences import Defaults, PreferenceError, parse_defaults
from owlmetry.store import StoreError, check_database_url
from owlmetry.store.devices import DEFAULT_MAX_DEVICES_PER_USER

DEFAULT_DATABASE_URL = "sqlite:///owlmetry.db"
DEFAULT_APNS_PRODUCTION_URL = "https://api.push.apple.com"
DEFAULT_APNS_SANDBOX_URL = "https://api.sandbox.push.apple.com"
# Apple suggests several connections for volume; four keep a 2-core host busy without
# opening more sockets than a single process can use.
DEFAULT_APNS_CONNECTIONS = 4
DEFAULT_FCM_URL = "https://fcm.googleapis.com"
# How long a dispatcher's claim on a delivery lasts without renewal (it renews a third of the
# way): the time before work of a crashed process is picked up again.
DEFAULT_NOTIFY_LEASE_SECONDS = 30
# On SIGTERM: how long requests and pushes under way may take to finish before the rest is
# left in the queue for the next start. Below systemd's default 90 s stop timeout.
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10

# Login-code mail. A self-hosted server has no domain of its own to send from; operators set
# EMAIL_FROM to an address their SMTP relay accepts.
DEFAULT_EMAIL_FROM = "Owlmetry <noreply@localhost>"
SMTP_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
# Upstream's cleanup: read notifications are soft-deleted after 30 days, soft-deleted ones
# removed after 90; unread ones never expire.
DEFAULT_RETENTION_READ_DAYS = 30
DEFAULT_RETENTION_DELETED_DAYS = 90
MAX_RETENTION_DAYS = 36_500
# Producers' idempotency keys live at least a day (issue 14), at most a year.
DEFAULT_IDEMPOTENCY_KEY_HOURS = 24
IDEMPOTENCY_KEY_HOURS_RANGE = (24, 8_760)
# nginx's client_header_timeout and client_body_timeout defaults (http/protocol.py).
DEFAULT_CLIENT_TIMEOUT_SECONDS = 60
MAX_DEVICES_PER_USER_LIMIT = 100_000
# How far ahead a producer may schedule a notification (`send_at`).
DEFAULT_SCHEDULE_HORIZON_DAYS = 30
MAX_SCHEDULE_HORIZON_DAYS = 3650

# HS256 keys shorter than the hash's output are weaker than the hash (RFC 7518, section 3.2).
MIN_SECRET_BYTES = 32

APNS_IDENTITY_VARIABLES = ("APNS_KEY_ID", "APNS_TEAM_ID", "APNS_BUNDLE_ID", "APNS_KEY_P8")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A setting that cannot be used; the message names it and says what would work."""


@dataclass(frozen=True)
class ApnsIdentity:
    key_id: str
    team_id: str
    bundle_id: str
    key_pem: str = field(repr=False)


@dataclass(frozen=True)
class SmtpSettings:
    """Where login codes are mailed (SMTP_URL). `starttls`: None upgrades when the server offers
    it, True requires it, False never tries; `implicit_tls` is smtps:// (TLS from the start)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    implicit_tls: bool = False
    starttls: bool | None = None


@dataclass(frozen=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_secret: str | None = field(default=None, repr=False)
    # Where the signing secret lives when JWT_SECRET is unset (credentials.signing_secret).
    secret_key_file: str | None = None
    cookie_secure: bool = False
    access_log: bool = False
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (see http/forwarded.py).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    apns: ApnsIdentity | None = None
    apns_missing: tuple[str, ...] = APNS_IDENTITY_VARIABLES  # the identity variables unset
    apns_production_url: str = DEFAULT_APNS_PRODUCTION_URL
    apns_sandbox_url: str = DEFAULT_APNS_SANDBOX_URL
    apns_ca_file: str | None = None
    apns_connections: int = DEFAULT_APNS_CONNECTIONS
    fcm: ServiceAccount | None = None  # None: FCM_SERVICE_ACCOUNT(_PATH) unset
    fcm_url: str = DEFAULT_FCM_URL
    fcm_ca_file: str | None = None
    notify_lease_s: int = DEFAULT_NOTIFY_LEASE_SECONDS
    shutdown_grace_s: int = DEFAULT_SHUTDOWN_GRACE_SECONDS
    smtp: SmtpSettings | None = None  # None: login codes go to the server log (development)
    email_from: str = DEFAULT_EMAIL_FROM
    signup_enabled: bool = False
    # Per client address and 15 minutes (owlmetry/login_codes.py).
    login_sends_per_address: int = SENDS_PER_ADDRESS
    login_verifies_per_address: int = VERIFIES_PER_ADDRESS
    # Channels per notification type where a user chose nothing (preferences.py).
    notification_defaults: Defaults = field(default_factory=Defaults)
    # Where a notification's relative `link` points in its email (upstream's WEB_APP_URL).
    web_app_url: str | None = None
    # Days before read notifications are soft-deleted, and soft-deleted ones removed; 0 keeps.
    retention_read_days: int = DEFAULT_RETENTION_READ_DAYS
    retention_deleted_days: int = DEFAULT_RETENTION_DELETED_DAYS
    # How long an Idempotency-Key is honoured, then pruned by the retention.
    idempotency_key_hours: int = DEFAULT_IDEMPOTENCY_KEY_HOURS
    # Origins besides the server's own whose cookie requests may change state (http/csrf.py).
    allowed_origins: frozenset[str] = frozenset()
    # The most a request head may take, and the longest pause inside a body (http/protocol.py).
    client_header_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_SECONDS
    client_body_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_SECONDS
    max_devices_per_user: int = DEFAULT_MAX_DEVICES_PER_USER
    schedule_horizon_days: int = DEFAULT_SCHEDULE_HORIZON_DAYS

    def with_flags(self, **flags) -> "Config":
        """Flags win over the environment; a flag left as None keeps the environment's value."""
        chosen = {name: value for name, value in flags.items() if value is not None}
        config = replace(self, **chosen)
        check_database(config.database_url,
                       "--database" if "database_url" in chosen else "DATABASE_URL")
        check_port(config.port, "--port")
        check_host(config.host, "--host")
        return config


def check_database(url: str, name: str) -> None:
    try:
        check_database_url(url)
    except StoreError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def check_host(host: str, name: str) -> None:
    # An empty host (a template's unset variable) would listen on every interface.
    if not host.strip():
        raise ConfigError(f"{name} must be an address to listen on, such as 127.0.0.1 (or "
                          f"0.0.0.0 for every interface), not {host!r}")


def check_port(port: int, name: str) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"{name} must be a port number from 1 to 65535, not {port}")


def parse_bool(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, not {text!r}")


def parse_int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} to {high}, not {value}")
    return value


def parse_jwt_secret(name: str, text: str) -> str:
    if len(text.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{name} must be at least {MIN_SECRET_BYTES} bytes long, not "
                          f"{len(text.encode())}; make one with: openssl rand -base64 48")
    return text


def parse_https_url(name: str, text: str) -> str:
    url = text.strip().rstrip("/")
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise ConfigError(f"{name} must be an https:// URL, not {text!r}")
    return url


def parse_networks(name: str, text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated IPv4/IPv6 addresses or CIDR blocks; an empty text is none."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            raise ConfigError(f"{name}: {network_problem(item)}") from None
    return tuple(networks)


def network_problem(item: str) -> str:
    try:
        meant = ipaddress.ip_network(item, strict=False)
    except ValueError:
        return (f"{item!r} is not an IP address or CIDR block "
                "(expected e.g. 127.0.0.1, 10.0.0.0/8, ::1, comma-separated)")
    # Refused rather than widened: a block with host bits set is more often a typo than not,
    # and guessing the network would trust peers the operator did not name.
    return f"{item!r} has host bits set; did you mean {meant}?"


def parse_origins(name: str, text: str) -> frozenset[str]:
    """Comma-separated exact origins; an empty text is none."""
    origins = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            origins.add(parse_origin(item))
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return frozenset(origins)


def parse_smtp_url(name: str, text: str) -> SmtpSettings:
    # The URL may hold a password: messages say what is wrong without echoing it.
    usage = (f"{name} must look like smtp://[user:password@]host[:port][?starttls=true|false] "
             "or smtps://[user:password@]host[:port]")
    try:
        url = urllib.parse.urlsplit(text.strip())
        port = url.port
        if port == 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{usage}; its port is not a number from 1 to 65535") from None
    scheme = url.scheme.lower()
    if scheme not in SMTP_DEFAULT_PORTS or not url.hostname:
        raise ConfigError(usage)
    if url.path not in ("", "/") or url.fragment:
        raise ConfigError(f"{usage}; it has no path")
    options = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    starttls = None
    for option, values in options.items():
        if option != "starttls" or len(values) != 1:
            raise ConfigError(f"{usage}; starttls (once) is its only option")
        starttls = parse_bool(f"{name}'s starttls option", values[0])
    if scheme == "smtps" and starttls is not None:
        raise ConfigError(f"{name}: smtps:// is TLS from the start; starttls applies to smtp:// only")
    return SmtpSettings(
        host=url.hostname,
        port=port or SMTP_DEFAULT_PORTS[scheme],
        username=urllib.parse.unquote(url.username) if url.username else None,
        password=urllib.parse.unquote(url.password) if url.password is not None else None,
        implicit_tls=scheme == "smtps",
        starttls=starttls,
    )


def parse_email_from(name: str, text: str) -> str:
    """An address, optionally with a display name: `noreply@example.com` or
    `Owlmetry <noreply@example.com>`."""
    text = text.strip()
    _, address = parseaddr(text)
    if "@" not in address or any(c in text for c in "\r\n\0"):
        raise ConfigError(f"{name} must be an email address such as noreply@example.com "
                          f"or 'Owlmetry <noreply@example.com>', not {text!r}")
    return text


def parse_notification_defaults(name: str, text: str) -> Defaults:
    try:
        return parse_defaults(text)
    except PreferenceError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def parse_web_url(name: str, text: str) -> str:
    url = text.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {text!r}")
    return url


def read_apns_identity(env: dict[str, str]) -> tuple[ApnsIdentity | None, tuple[str, ...]]:
    key_pem = env.get("APNS_KEY_P8", "").strip()
    key_path = env.get("APNS_KEY_P8_PATH", "").strip()
    source = "APNS_KEY_P8"
    if not key_pem and key_path:
        source = "APNS_KEY_P8_PATH"
        try:
            with open(key_path) as f:
                key_pem = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise ConfigError(f"APNS_KEY_P8_PATH: cannot read {key_path!r}: {reason}") from None
    if key_pem and "-----BEGIN PRIVATE KEY-----" not in key_pem:
        raise ConfigError(f"{source} must be the PEM text of the .p8 key (BEGIN PRIVATE KEY)")
    if key_pem:
        try:
            check_signing_key(key_pem)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    values = {
        "APNS_KEY_ID": env.get("APNS_KEY_ID", "").strip(),
        "APNS_TEAM_ID": env.get("APNS_TEAM_ID", "").strip(),
        "APNS_BUNDLE_ID": env.get("APNS_BUNDLE_ID", "").strip(),
        "APNS_KEY_P8": key_pem,
    }
    missing = tuple(name for name, value in values.items() if not value)
    if missing:
        return None, missing
    return ApnsIdentity(*values.values()), ()


def read_fcm_service_account(env: dict[str, str]) -> ServiceAccount | None:
    text = env.get("FCM_SERVICE_ACCOUNT", "").strip()
    path = env.get("FCM_SERVICE_ACCOUNT_PATH", "").strip()
    if text and path:
        # Two accounts may name two projects: guessing which one was meant is worse than asking.
        raise ConfigError("FCM_SERVICE_ACCOUNT and FCM_SERVICE_ACCOUNT_PATH are both set; "
                          "set one of them")
    name = "FCM_SERVICE_ACCOUNT"
    if path:
        name = f"FCM_SERVICE_ACCOUNT_PATH ({path})"
        try:
            with open(path) as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"FCM_SERVICE_ACCOUNT_PATH: cannot read {path!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}: not a text file (expected the service-account JSON)") from None
    if not text:
        return None
    try:
        return parse_service_account(text)
    except ServiceAccountError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def read_ca_file(name: str, env: dict[str, str]) -> str | None:
    ca_file = env.get(name, "").strip() or None
    if ca_file is None:
        return None
    if not os.path.exists(ca_file):
        raise ConfigError(f"{name}: no such file {ca_file!r}")
    if not os.path.isfile(ca_file):
        raise ConfigError(f"{name}: {ca_file!r} is not a file")
    # Loaded here once, so that a file of no certificates is this setting's error, not a
    # failure to connect (or, in `serve`, to listen) later.
    try:
        ssl.create_default_context().load_verify_locations(ca_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"{name}: {ca_file!r} holds no PEM certificate ({exc})") from None
    return ca_file


def from_env(env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    database_url = env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    check_database(database_url, "DATABASE_URL")
    ca_file = read_ca_file("APNS_CA_FILE", env)
    apns, missing = read_apns_identity(env)
    jwt_secret = parse_jwt_secret("JWT_SECRET", env["JWT_SECRET"]) if env.get("JWT_SECRET") else None
    secret_key_file = env.get("SECRET_KEY_FILE", "").strip() or None
    if jwt_secret and secret_key_file:
        raise ConfigError("set JWT_SECRET or SECRET_KEY_FILE, not both")
    return Config(
        database_url=database_url,
        jwt_secret=jwt_secret,
        secret_key_file=secret_key_file,
        cookie_secure=parse_bool("COOKIE_SECURE", env.get("COOKIE_SECURE", "false")),
        access_log=parse_bool("ACCESS_LOG", env.get("ACCESS_LOG", "false")),
        trusted_proxies=parse_networks("TRUSTED_PROXIES", env.get("TRUSTED_PROXIES", "")),
        apns=apns,
        apns_missing=missing,
        apns_production_url=parse_https_url(
            "APNS_PRODUCTION_URL", env.get("APNS_PRODUCTION_URL") or DEFAULT_APNS_PRODUCTION_URL
        ),
        apns_sandbox_url=parse_https_url(
            "APNS_SANDBOX_URL", env.get("APNS_SANDBOX_URL") or DEFAULT_APNS_SANDBOX_URL
        ),
        apns_ca_file=ca_file,
        apns_connections=parse_int(
            "APNS_CONNECTIONS", env.get("APNS_CONNECTIONS") or str(DEFAULT_APNS_CONNECTIONS), 1, 64
        ),
        fcm=read_fcm_service_account(env),
        fcm_url=parse_https_url("FCM_URL", env.get("FCM_URL") or DEFAULT_FCM_URL),
        fcm_ca_file=read_ca_file("FCM_CA_FILE", env),
        notify_lease_s=parse_int(
            "NOTIFY_LEASE_SECONDS",
            env.get("NOTIFY_LEASE_SECONDS") or str(DEFAULT_NOTIFY_LEASE_SECONDS), 2, 3600
        ),
        shutdown_grace_s=parse_int(
            "SHUTDOWN_GRACE_SECONDS",
            env.get("SHUTDOWN_GRACE_SECONDS") or str(DEFAULT_SHUTDOWN_GRACE_SECONDS), 0, 600
        ),
        smtp=parse_smtp_url("SMTP_URL", env["SMTP_URL"]) if env.get("SMTP_URL", "").strip() else None,
        email_from=parse_email_from("EMAIL_FROM", env.get("EMAIL_FROM") or DEFAULT_EMAIL_FROM),
        signup_enabled=parse_bool("SIGNUP_ENABLED", env.get("SIGNUP_ENABLED", "false")),
        login_sends_per_address=parse_int(
            "LOGIN_SENDS_PER_ADDRESS", env.get("LOGIN_SENDS_PER_ADDRESS") or str(SENDS_PER_ADDRESS),
            1, 100_000),
        login_verifies_per_address=parse_int(
            "LOGIN_VERIFIES_PER_ADDRESS",
            env.get("LOGIN_VERIFIES_PER_ADDRESS") or str(VERIFIES_PER_ADDRESS), 1, 100_000),
        notification_defaults=(
            parse_notification_defaults("NOTIFICATION_DEFAULTS", env["NOTIFICATION_DEFAULTS"])
            if env.get("NOTIFICATION_DEFAULTS", "").strip() else Defaults()),
        web_app_url=(parse_web_url("WEB_APP_URL", env["WEB_APP_URL"])
                     if env.get("WEB_APP_URL", "").strip() else None),
        retention_read_days=parse_int(
            "RETENTION_READ_DAYS",
            env.get("RETENTION_READ_DAYS") or str(DEFAULT_RETENTION_READ_DAYS), 0, MAX_RETENTION_DAYS),
        retention_deleted_days=parse_int(
            "RETENTION_DELETED_DAYS",
            env.get("RETENTION_DELETED_DAYS") or str(DEFAULT_RETENTION_DELETED_DAYS), 0,
            MAX_RETENTION_DAYS),
        idempotency_key_hours=parse_int(
            "IDEMPOTENCY_KEY_HOURS",
            env.get("IDEMPOTENCY_KEY_HOURS") or str(DEFAULT_IDEMPOTENCY_KEY_HOURS),
            *IDEMPOTENCY_KEY_HOURS_RANGE),
        allowed_origins=parse_origins("ALLOWED_ORIGINS", env.get("ALLOWED_ORIGINS", "")),
        client_header_timeout_s=parse_int(
            "CLIENT_HEADER_TIMEOUT",
            env.get("CLIENT_HEADER_TIMEOUT") or str(DEFAULT_CLIENT_TIMEOUT_SECONDS), 1, 3600),
        client_body_timeout_s=parse_int(
            "CLIENT_BODY_TIMEOUT",
            env.get("CLIENT_BODY_TIMEOUT") or str(DEFAULT_CLIENT_TIMEOUT_SECONDS), 1, 3600),
        max_devices_per_user=parse_int(
            "MAX_DEVICES_PER_USER",
            env.get("MAX_DEVICES_PER_USER") or str(DEFAULT_MAX_DEVICES_PER_USER), 1,
            MAX_DEVICES_PER_USER_LIMIT),
        schedule_horizon_days=parse_int(
            "SCHEDULE_HORIZON_DAYS",
            env.get("SCHEDULE_HORIZON_DAYS") or str(DEFAULT_SCHEDULE_HORIZON_DAYS), 1,
            MAX_SCHEDULE_HORIZON_DAYS),
    )
