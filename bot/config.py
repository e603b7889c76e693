"""Settings from environment variables (DESIGN §4.1), or from an optional `xinyi.toml`.

The TOML file (XINYI_CONFIG, else ./xinyi.toml) sets the same keys in lower case without
the prefix (`database_url = "..."`); an environment variable wins over the file. Relative
paths are taken from the working directory. Every complaint names the variable.
"""
from __future__ import annotations

import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from billing.clock import Clock, SystemClock
from billing.core import Core
from billing.errors import InvalidInput
from billing.pii import PiiCipher
from billing.policy import PolicyError, load_policy
from billing.registry import DEMO_REGISTRY, CsvRegistry
from billing.validate import whole_number
from bot.sms import PER_PHONE as SMS_PER_PHONE
from bot.sms import PROVIDERS
from bot.sms import TEMPLATES as SMS_TEMPLATES
from storage.db import Database

PREFIX = "XINYI_"
SECRET_KEY_FILE = "secret_key"
SECRET_KEY_MIN_CHARS = 32
EVENTS_SECRET_MIN_CHARS = 16
ASYNC_DRIVERS = ("sqlite+inline", "sqlite+aiosqlite", "postgresql+asyncpg")
WECHAT_CREDENTIALS = ("wechat_appid", "wechat_secret", "wechat_token")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    secret_key: str = field(repr=False)
    sandbox: bool
    database_url: str = "sqlite+inline:///./xinyi.db"
    # Set when database_url is PgBouncer's (transaction pooling): PostgreSQL itself, for LISTEN,
    # the sweep's leader lock and `xinyi migrate`.
    database_direct_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    policy: str = "beijing-shijingshan"
    sweep_every_s: int | None = None  # None: every minute (every 2 s in the sandbox)
    data_dir: Path = Path("data")
    registry: Path | None = None
    wechat_appid: str | None = None
    wechat_secret: str | None = field(default=None, repr=False)
    wechat_token: str | None = field(default=None, repr=False)
    wechat_aes_key: str | None = field(default=None, repr=False)
    wechat_api_base: str = "https://api.weixin.qq.com"
    # The account's template-message ids: "bill_issued=ID,bill_reminder=ID,bill_overdue=ID".
    wechat_templates: dict[str, str] = field(default_factory=dict)
    wechatpay_mchid: str | None = None
    wechatpay_serial_no: str | None = None
    wechatpay_private_key: Path | None = None
    wechatpay_apiv3_key: str | None = field(default=None, repr=False)
    wechatpay_public_key: Path | None = None
    wechatpay_public_key_id: str | None = None
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    alipay_appid: str | None = None
    alipay_private_key: Path | None = None
    alipay_public_key: Path | None = None
    alipay_gateway: str = "https://openapi.alipay.com/gateway.do"
    # Where programme events go (DESIGN §4.6), signed with the secret; None: kept, listed, not sent.
    events_url: str | None = None
    events_secret: str | None = field(default=None, repr=False)
    # SMS through a provider (bot/sms.py); none: SMS are logged (the sandbox records and shows them).
    sms_provider: str | None = None
    sms_secret_id: str | None = None
    sms_secret_key: str | None = field(default=None, repr=False)
    sms_sdk_app_id: str | None = None  # Tencent Cloud's SmsSdkAppId
    sms_sign_name: str | None = None
    # The approved templates' ids: "bill_issued=ID,bill_issued.en=ID,bill_reminder=ID,..." (bot/sms.py TEMPLATES).
    sms_templates: dict[str, str] = field(default_factory=dict)
    sms_endpoint: str | None = None  # the provider's API base, when not its public one
    # At most so many SMS to one member's phone within so many seconds, each pair: "1/30s,5/1h,10/1d".
    sms_per_phone: tuple[tuple[int, int], ...] = SMS_PER_PHONE


def _text(raw: str) -> str:
    return raw


def _templates(raw: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
    if any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
        raise ValueError(f"expected kind=template_id pairs separated by commas: {raw!r}")
    return {kind.strip(): template.strip() for kind, template in pairs}


def _sms_provider(raw: str) -> str:
    if raw not in PROVIDERS:
        raise ValueError(f"{' or '.join(PROVIDERS)}, got {raw!r}")
    return raw


def _sms_templates(raw: str) -> dict[str, str]:
    templates = _templates(raw)
    unknown = [key for key in templates if key.split(".")[0] not in SMS_TEMPLATES]
    if unknown:
        raise ValueError(f"no SMS of the kind {', '.join(unknown)} (kinds: {', '.join(SMS_TEMPLATES)}; "
                         "a language's own template: kind.en, kind.zh_Hant)")
    return templates


RATE_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"([1-9][0-9]{0,5})/([1-9][0-9]{0,5})(s|min|h|d)")


def _rates(raw: str) -> tuple[tuple[int, int], ...]:
    """`1/30s,5/1h,10/1d` -> ((1, 30), (5, 3600), (10, 86400)): so many within so many seconds."""
    matches = [_RATE.fullmatch(part.strip()) for part in raw.split(",")]
    if not all(matches):
        raise ValueError(f"expected COUNT/PERIOD pairs such as 1/30s,5/1h,10/1d (units s, min, h, d): {raw!r}")
    return tuple((int(m[1]), int(m[2]) * RATE_UNITS[m[3]]) for m in matches if m)


def _port(raw: str) -> int:
    port = whole_number(raw, 5)
    if port is None or not 1 <= port <= 65535:
        raise ValueError(f"not a port number (1 to 65535): {raw!r}")
    return port


def _seconds(raw: str) -> int:
    seconds = whole_number(raw, 6)
    if seconds is None or seconds < 1:
        raise ValueError(f"a whole number of seconds, at least 1: {raw!r}")
    return seconds


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be 1 or 0, got {raw!r}")


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {raw!r}")
    return raw.rstrip("/")


def _database_url(raw: str) -> str:
    try:
        driver = make_url(raw).drivername
    except ArgumentError:
        raise ValueError(f"not a database URL: {raw!r}") from None
    if driver not in ASYNC_DRIVERS:
        raise ValueError(f"use an async driver ({' or '.join(d + '://' for d in ASYNC_DRIVERS)}), got {driver}://")
    return raw


def _file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {raw}")
    return path


def _folder(raw: str) -> Path:
    return Path(raw).expanduser()


def _events_secret(raw: str) -> str:
    if len(raw) < EVENTS_SECRET_MIN_CHARS:
        raise ValueError(f"too short: at least {EVENTS_SECRET_MIN_CHARS} characters, agreed with the receiver")
    return raw


def _secret_key(raw: str) -> str:
    if len(raw) < SECRET_KEY_MIN_CHARS:
        raise ValueError(f"too short: at least {SECRET_KEY_MIN_CHARS} characters (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return raw


PARSERS: dict[str, Callable[[str], Any]] = {
    "database_url": _database_url,
    "database_direct_url": _database_url,
    "host": _text,
    "port": _port,
    "public_url": _http_url,
    "secret_key": _secret_key,
    "sandbox": _flag,
    "policy": _text,
    "sweep_every_s": _seconds,
    "data_dir": _folder,
    "registry": _file,
    "wechat_appid": _text,
    "wechat_secret": _text,
    "wechat_token": _text,
    "wechat_aes_key": _text,
    "wechat_api_base": _http_url,
    "wechat_templates": _templates,
    "wechatpay_mchid": _text,
    "wechatpay_serial_no": _text,
    "wechatpay_private_key": _file,
    "wechatpay_apiv3_key": _text,
    "wechatpay_public_key": _file,
    "wechatpay_public_key_id": _text,
    "wechatpay_api_base": _http_url,
    "alipay_appid": _text,
    "alipay_private_key": _file,
    "alipay_public_key": _file,
    "alipay_gateway": _http_url,
    "events_url": _http_url,
    "events_secret": _events_secret,
    "sms_provider": _sms_provider,
    "sms_secret_id": _text,
    "sms_secret_key": _text,
    "sms_sdk_app_id": _text,
    "sms_sign_name": _text,
    "sms_templates": _sms_templates,
    "sms_endpoint": _http_url,
    "sms_per_phone": _rates,
}
SMS_ACCOUNT = ("sms_secret_id", "sms_secret_key", "sms_sign_name", "sms_templates")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw = _read_toml(env)
    for key in PARSERS:
        value = env.get(PREFIX + key.upper())
        if value is not None and value.strip():
            raw[key] = (value.strip(), PREFIX + key.upper())
    values: dict[str, Any] = {}
    for key, (text, source) in raw.items():
        try:
            values[key] = PARSERS[key](text)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if "database_direct_url" in values and not values["database_direct_url"].startswith("postgresql"):
        raise ConfigError("XINYI_DATABASE_DIRECT_URL: PostgreSQL's own address, for when XINYI_DATABASE_URL is PgBouncer's")
    if "sandbox" not in values:
        values["sandbox"] = not any(values.get(k) for k in (*WECHAT_CREDENTIALS, "wechat_aes_key"))
    if not values["sandbox"]:
        missing = [PREFIX + k.upper() for k in WECHAT_CREDENTIALS if k not in values]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: required outside sandbox mode (or set XINYI_SANDBOX=1)")
    if "events_url" in values and "events_secret" not in values:
        raise ConfigError("XINYI_EVENTS_SECRET: required when XINYI_EVENTS_URL is set: the events are signed with it, "
                          "and the receiver checks the signature with the same secret")
    if "sms_provider" in values:
        needed = (*SMS_ACCOUNT, "sms_sdk_app_id") if values["sms_provider"] == "tencent" else SMS_ACCOUNT
        missing = [PREFIX + k.upper() for k in needed if k not in values]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: required with XINYI_SMS_PROVIDER={values['sms_provider']}")
    if "public_url" not in values:  # the links printed and sent go where this server listens
        host = values.get("host", Settings.host)
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
        values["public_url"] = f"http://{host}:{values.get('port', Settings.port)}"
    data_dir = values.setdefault("data_dir", Settings.data_dir)
    if "secret_key" not in values:
        if not values["sandbox"]:
            raise ConfigError("XINYI_SECRET_KEY: required outside sandbox mode (it encrypts personal data; keep it safe)")
        values["secret_key"] = sandbox_secret_key(data_dir)
    return Settings(**values)


def _read_toml(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Keys of the TOML file as (text, where) pairs, parsed later like environment values."""
    named = env.get(PREFIX + "CONFIG")
    path = Path(named) if named else Path("xinyi.toml")
    if not path.is_file():
        if named:
            raise ConfigError(f"XINYI_CONFIG: no such file: {named}")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw = {}
    for key, value in data.items():
        where = f"{path}: {key} ({PREFIX}{key.upper()})"
        if key not in PARSERS:
            raise ConfigError(f"{path}: {key}: unknown key (keys: {', '.join(PARSERS)})")
        if isinstance(value, str) and not value.strip():
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, a number or true/false")
        raw[key] = (value.strip(), where)
    return raw


def sandbox_secret_key(data_dir: Path) -> str:
    """The key generated on first use into the data folder (mode 0600) and read back after."""
    path = data_dir / SECRET_KEY_FILE
    try:
        if not path.exists():
            _create_once(path, secrets.token_urlsafe(32))
        key = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ConfigError(f"XINYI_DATA_DIR: cannot use {path}: {exc.strerror}") from None
    if len(key) < SECRET_KEY_MIN_CHARS:
        raise ConfigError(f"XINYI_SECRET_KEY: {path} is damaged (too short); restore it from a backup")
    return key


def _create_once(path: Path, content: str) -> None:
    """Written aside, then linked into place: two first starts at once still agree on one key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="ascii") as handle:
        handle.write(content + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def session_url(settings: Settings) -> str:
    """Where a server session of its own is had (Alembic's migrations, the schema check): PostgreSQL
    itself when the database URL is a pooler's."""
    return settings.database_direct_url or settings.database_url


def build_core(settings: Settings, clock: Clock | None = None) -> Core:
    """The billing core these settings describe; the caller closes `core.db`."""
    try:
        policy = load_policy(settings.policy)
    except PolicyError as exc:
        raise ConfigError(f"XINYI_POLICY: {exc}") from None
    try:
        registry = CsvRegistry(settings.registry or DEMO_REGISTRY)
    except InvalidInput as exc:
        raise ConfigError(f"XINYI_REGISTRY: {exc.message}") from None
    return Core(
        db=Database(settings.database_url, direct_url=settings.database_direct_url),
        policy=policy,
        pii=PiiCipher(settings.secret_key),
        registry=registry,
        clock=clock or SystemClock(),
        public_url=settings.public_url,
    )
