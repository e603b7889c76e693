"""Settings: defaults, environment over xinyi.toml, clear errors, the sandbox secret key."""
from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from billing.policy import load_policy
from billing.registry import DEMO_REGISTRY
from bot.config import ConfigError, Settings, build_core, load_settings, session_url

KEY = "k" * 32
WECHAT = {"XINYI_WECHAT_APPID": "wx0123456789", "XINYI_WECHAT_SECRET": "s3cret", "XINYI_WECHAT_TOKEN": "tok"}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Each test in an empty working directory, so that no ./xinyi.toml or ./data is shared."""
    monkeypatch.chdir(tmp_path)


def test_defaults_are_those_of_the_design():
    settings = load_settings({})
    assert settings.database_url == "sqlite+inline:///./xinyi.db"
    assert (settings.host, settings.port, settings.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert settings.sandbox is True
    assert settings.policy == "beijing-shijingshan"
    assert settings.registry is None
    assert settings.wechat_api_base == "https://api.weixin.qq.com"
    assert settings.wechatpay_api_base == "https://api.mch.weixin.qq.com"
    assert settings.alipay_gateway == "https://openapi.alipay.com/gateway.do"
    assert settings.data_dir == Path("data")


def test_sandbox_secret_key_is_generated_once_private_and_reused(tmp_path):
    first = load_settings({"XINYI_DATA_DIR": str(tmp_path / "state")})
    key_file = tmp_path / "state" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.secret_key
    assert len(first.secret_key) >= 32
    assert load_settings({"XINYI_DATA_DIR": str(tmp_path / "state")}).secret_key == first.secret_key
    assert load_settings({"XINYI_DATA_DIR": str(tmp_path / "other")}).secret_key != first.secret_key
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]  # no draft left behind


def test_a_damaged_secret_key_file_is_refused_not_replaced(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="secret_key is damaged"):
        load_settings({})
    assert (tmp_path / "data" / "secret_key").read_text() == "short\n"


def test_the_secret_key_is_required_outside_the_sandbox(tmp_path):
    with pytest.raises(ConfigError, match="^XINYI_SECRET_KEY: required outside sandbox mode"):
        load_settings(WECHAT)
    settings = load_settings({**WECHAT, "XINYI_SECRET_KEY": KEY})
    assert (settings.sandbox, settings.secret_key) == (False, KEY)
    assert not (tmp_path / "data").exists()


def test_wechat_credentials_turn_the_sandbox_off_and_must_come_complete():
    with pytest.raises(ConfigError, match="^XINYI_WECHAT_SECRET, XINYI_WECHAT_TOKEN: required outside sandbox mode"):
        load_settings({"XINYI_WECHAT_APPID": "wx0123456789", "XINYI_SECRET_KEY": KEY})
    with pytest.raises(ConfigError, match="^XINYI_WECHAT_APPID, XINYI_WECHAT_SECRET, XINYI_WECHAT_TOKEN: required"):
        load_settings({"XINYI_SANDBOX": "0", "XINYI_SECRET_KEY": KEY})
    assert load_settings({**WECHAT, "XINYI_SANDBOX": "1"}).sandbox is True


def test_environment_overrides_defaults():
    settings = load_settings({
        "XINYI_DATABASE_URL": "postgresql+asyncpg://xinyi:pw@db/xinyi",
        "XINYI_HOST": "0.0.0.0",
        "XINYI_PORT": "9000",
        "XINYI_PUBLIC_URL": "https://xinyi.example.cn/",
        "XINYI_POLICY": "xiamen",
        "XINYI_REGISTRY": str(DEMO_REGISTRY),
        "XINYI_SECRET_KEY": KEY,
    })
    assert settings.database_url == "postgresql+asyncpg://xinyi:pw@db/xinyi"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.public_url == "https://xinyi.example.cn"
    assert (settings.policy, settings.registry, settings.secret_key) == ("xiamen", DEMO_REGISTRY, KEY)


@pytest.mark.parametrize("host, port, url", [
    ("127.0.0.1", "8099", "http://127.0.0.1:8099"),
    ("0.0.0.0", "9000", "http://127.0.0.1:9000"),
    ("192.168.1.20", "8080", "http://192.168.1.20:8080"),
    ("::1", "8081", "http://[::1]:8081"),
])
def test_without_a_public_url_links_point_where_the_server_listens(host, port, url):
    assert load_settings({"XINYI_HOST": host, "XINYI_PORT": port}).public_url == url


def test_xinyi_toml_sets_the_same_keys_and_the_environment_wins(tmp_path):
    Path("xinyi.toml").write_text(
        'port = 9001\nhost = "0.0.0.0"\nsandbox = true\npolicy = "nantong"\nwechat_appid = "wx1"\n'
        f'secret_key = "{KEY}"\n'
    )
    settings = load_settings({"XINYI_PORT": "9002"})
    assert (settings.port, settings.host, settings.policy, settings.sandbox) == (9002, "0.0.0.0", "nantong", True)
    assert (settings.wechat_appid, settings.secret_key) == ("wx1", KEY)

    named = tmp_path / "elsewhere.toml"
    named.write_text("port = 7000\n")
    assert load_settings({"XINYI_CONFIG": str(named)}).port == 7000


@pytest.mark.parametrize("toml, message", [
    ("prot = 9000\n", "xinyi.toml: prot: unknown key"),
    ('port = "http"\n', "xinyi.toml: port (XINYI_PORT): not a port number"),
    ("port = [1]\n", "xinyi.toml: port (XINYI_PORT): expected a string, a number or true/false"),
    ("port = \n", "xinyi.toml: not valid TOML"),
])
def test_a_bad_xinyi_toml_is_named_with_its_key(toml, message):
    Path("xinyi.toml").write_text(toml)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load_settings({})


def test_a_missing_named_config_file_is_an_error():
    with pytest.raises(ConfigError, match="^XINYI_CONFIG: no such file: nowhere.toml"):
        load_settings({"XINYI_CONFIG": "nowhere.toml"})


@pytest.mark.parametrize("variable, value, problem", [
    ("XINYI_PORT", "eighty", "not a port number"),
    ("XINYI_PORT", "70000", "not a port number"),
    ("XINYI_SANDBOX", "maybe", "must be 1 or 0"),
    ("XINYI_DATABASE_URL", "postgresql://db/xinyi", "use an async driver"),
    ("XINYI_DATABASE_URL", "not a url", "not a database URL"),
    ("XINYI_PUBLIC_URL", "xinyi.example.cn", "must start with http:// or https://"),
    ("XINYI_REGISTRY", "missing.csv", "no such file"),
    ("XINYI_WECHATPAY_PRIVATE_KEY", "apiclient_key.pem", "no such file"),
    ("XINYI_SECRET_KEY", "too-short", "too short"),
    ("XINYI_EVENTS_URL", "insurer.example.cn/events", "must start with http:// or https://"),
    ("XINYI_EVENTS_SECRET", "short", "too short"),
    ("XINYI_SWEEP_EVERY_S", "0", "a whole number of seconds, at least 1"),
    ("XINYI_SWEEP_EVERY_S", "1.5", "a whole number of seconds, at least 1"),
    ("XINYI_DATABASE_DIRECT_URL", "sqlite+inline:///x.db", "PostgreSQL's own address"),
    ("XINYI_SMS_PROVIDER", "twilio", "tencent or aliyun, got 'twilio'"),
    ("XINYI_SMS_TEMPLATES", "bill_paid=SMS_1", "no SMS of the kind bill_paid"),
    ("XINYI_SMS_TEMPLATES", "bill_issued", "expected kind=template_id pairs"),
    ("XINYI_SMS_PER_PHONE", "1/30", "expected COUNT/PERIOD pairs"),
    ("XINYI_SMS_PER_PHONE", "0/1h", "expected COUNT/PERIOD pairs"),
])
def test_a_bad_value_is_named_with_its_variable(variable, value, problem):
    with pytest.raises(ConfigError, match=f"^{variable}: {problem}"):
        load_settings({variable: value})


def test_an_events_url_needs_its_secret():
    url = "https://insurer.example.cn/xinyi/events"
    with pytest.raises(ConfigError, match="^XINYI_EVENTS_SECRET: required when XINYI_EVENTS_URL is set"):
        load_settings({"XINYI_EVENTS_URL": url})
    settings = load_settings({"XINYI_EVENTS_URL": url, "XINYI_EVENTS_SECRET": "e" * 16})
    assert (settings.events_url, settings.events_secret) == (url, "e" * 16)
    assert load_settings({}).events_url is None


SMS = {"XINYI_SMS_SECRET_ID": "AKIDsample", "XINYI_SMS_SECRET_KEY": "sms-secret-key", "XINYI_SMS_SIGN_NAME": "信医",
       "XINYI_SMS_TEMPLATES": "bill_issued=1001,bill_issued.en=1002,bill_reminder=1003"}


def test_an_sms_provider_needs_its_account():
    with pytest.raises(ConfigError, match="^XINYI_SMS_SDK_APP_ID: required with XINYI_SMS_PROVIDER=tencent"):
        load_settings({**SMS, "XINYI_SMS_PROVIDER": "tencent"})
    with pytest.raises(ConfigError, match="^XINYI_SMS_SIGN_NAME, XINYI_SMS_TEMPLATES: required with XINYI_SMS_PROVIDER=aliyun"):
        load_settings({"XINYI_SMS_PROVIDER": "aliyun", "XINYI_SMS_SECRET_ID": "a", "XINYI_SMS_SECRET_KEY": "b"})
    settings = load_settings({**SMS, "XINYI_SMS_PROVIDER": "aliyun", "XINYI_SMS_PER_PHONE": "1/1min,20/1d"})
    assert settings.sms_templates == {"bill_issued": "1001", "bill_issued.en": "1002", "bill_reminder": "1003"}
    assert (settings.sms_provider, settings.sms_per_phone) == ("aliyun", ((1, 60), (20, 86400)))
    assert load_settings({}).sms_per_phone == ((1, 30), (5, 3600), (10, 86400))  # the providers' defaults


def test_secrets_stay_out_of_the_repr():
    settings = load_settings({**WECHAT, **SMS, "XINYI_SECRET_KEY": KEY, "XINYI_EVENTS_SECRET": "events-secret-0123"})
    assert KEY not in repr(settings) and "s3cret" not in repr(settings) and "events-secret" not in repr(settings)
    assert "sms-secret-key" not in repr(settings)
    assert "wx0123456789" in repr(settings)


async def test_build_core_follows_the_settings(tmp_path):
    core = build_core(load_settings({"XINYI_POLICY": "nantong", "XINYI_PUBLIC_URL": "https://pay.example.cn",
                                     "XINYI_DATABASE_URL": f"sqlite+inline:///{tmp_path / 'x.db'}"}))
    try:
        assert core.policy.name == "南通市一院先诊疗后付费"
        assert core.pay_url("t") == "https://pay.example.cn/pay/t"
        assert core.db.url.endswith("x.db")
        assert await core.registry.lookup("110105198503120012") is not None
    finally:
        await core.db.close()


async def test_behind_a_pooler_the_database_keeps_a_direct_url_for_its_sessions():
    pooled, direct = "postgresql+asyncpg://xinyi@pgbouncer:6432/xinyi", "postgresql+asyncpg://xinyi@db:5432/xinyi"
    settings = load_settings({"XINYI_DATABASE_URL": pooled, "XINYI_DATABASE_DIRECT_URL": direct})
    assert (session_url(settings), session_url(load_settings({"XINYI_DATABASE_URL": pooled}))) == (direct, pooled)
    core = build_core(settings)
    try:
        assert (core.db.url, core.db.direct_url) == (pooled, direct)
        twin = core.db.twin()
        assert twin.direct_url == direct
        await twin.close()
    finally:
        await core.db.close()


def test_build_core_names_the_variable_of_a_bad_policy_or_registry(tmp_path):
    with pytest.raises(ConfigError, match="^XINYI_POLICY: .*no such preset"):
        build_core(load_settings({"XINYI_POLICY": "shanghai"}))
    registry = tmp_path / "registry.csv"
    registry.write_text("id_number,name\n")
    with pytest.raises(ConfigError, match="^XINYI_REGISTRY: .*the header must be"):
        build_core(load_settings({"XINYI_REGISTRY": str(registry)}))


def test_settings_fields_are_the_design_variables():
    """DESIGN §4.1 plus the data folder and the template ids; a new variable must be added here on purpose."""
    assert {f.upper() for f in Settings.__dataclass_fields__} == {
        "DATABASE_URL", "DATABASE_DIRECT_URL", "SWEEP_EVERY_S", "HOST", "PORT", "PUBLIC_URL", "SECRET_KEY", "SANDBOX", "POLICY", "DATA_DIR", "REGISTRY",
        "WECHAT_APPID", "WECHAT_SECRET", "WECHAT_TOKEN", "WECHAT_AES_KEY", "WECHAT_API_BASE", "WECHAT_TEMPLATES",
        "WECHATPAY_MCHID", "WECHATPAY_SERIAL_NO", "WECHATPAY_PRIVATE_KEY", "WECHATPAY_APIV3_KEY",
        "WECHATPAY_PUBLIC_KEY", "WECHATPAY_PUBLIC_KEY_ID", "WECHATPAY_API_BASE",
        "ALIPAY_APPID", "ALIPAY_PRIVATE_KEY", "ALIPAY_PUBLIC_KEY", "ALIPAY_GATEWAY", "EVENTS_URL", "EVENTS_SECRET",
        "SMS_PROVIDER", "SMS_SECRET_ID", "SMS_SECRET_KEY", "SMS_SDK_APP_ID", "SMS_SIGN_NAME", "SMS_TEMPLATES",
        "SMS_ENDPOINT", "SMS_PER_PHONE",
    }


def test_the_readme_fourth_city_is_a_valid_policy(tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    suzhou = tmp_path / "suzhou.toml"
    suzhou.write_text(readme.split("```toml\n")[1].split("```")[0], encoding="utf-8")
    policy = load_policy(str(suzhou))
    assert (policy.name, policy.limit_fen, policy.due_hours) == ("苏州市信用就医", 200000, 72)
    assert [rule.stage for rule in policy.ladder] == ["blacklisted", "revoked", "suspended"]
