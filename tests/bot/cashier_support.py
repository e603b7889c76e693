"""Shared by the cashier tests: a bill of three items, and the xinyi app on a loopback port
with what sandbox mode runs beside it, all mounted in the same app: the fake WeChat (OAuth),
the sandbox WeChat Pay and the sandbox Alipay, with keys made here."""
from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlencode

from aiohttp.test_utils import unused_port
from sqlalchemy import select

from billing import visits
from billing.clock import FixedClock
from billing.core import Core
from billing.members import enrol
from bot.alipay import ALIPAY_CONFIG, AlipayConfig
from bot.app import build_app
from bot.cashier import SANDBOX_WECHATPAY_PAY
from bot.sandbox import alipay_gateway, wechatpay_gateway
from bot.wechat_api import WeChatAccount, WeChatApi
from bot.wechatpay import WECHATPAY_CONFIG, WechatPayConfig
from storage.models import Bill, CreditLine

PATIENT = "110105198503120012"
LIMIT_FEN = 200000
SELF_PAY_FEN = 3000 + 2550  # 血常规 and the drug; the registration fee was paid at the window
WECHATPAY_MOUNT = "/sandbox/wechatpay"
DRUG = '阿莫西林 <胶囊> & "0.25g"'  # markup in hospital data must come out as text


async def issue_bill(core: Core) -> tuple[str, str]:
    """Zhang Wei's visit at H1: three items through the insurance split; (bill_no, the link's token)."""
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    await visits.open_visit(core, "H1", {"visit_no": "V1", "id_number": PATIENT, "department": "内科",
                                         "kind": "outpatient", "exclusion": None})
    for charge_no, category, name, amount_fen, prepaid in (
        ("C0", "registration", "普通门诊挂号", 500, True),
        ("C1", "exam", "血常规", 12000, False),
        ("C2", "drug", DRUG, 4550, False),
    ):
        await visits.post_charge(core, "H1", "V1", {"charge_no": charge_no, "category": category, "name": name,
                                                    "amount_fen": amount_fen, "prepaid": prepaid})
    answer = await visits.checkout(core, "H1", "V1", {"items": [
        {"charge_no": "C0", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 500},
        {"charge_no": "C1", "insurance_fen": 7000, "personal_account_fen": 2000, "self_pay_fen": 3000},
        {"charge_no": "C2", "insurance_fen": 2000, "personal_account_fen": 0, "self_pay_fen": 2550},
    ]})
    return answer["bill_no"], answer["pay_url"].rsplit("/", 1)[1]


@dataclass
class Cashier:
    core: Core
    base: str
    bill_no: str
    token: str
    wechatpay_config: WechatPayConfig | None
    wechatpay: wechatpay_gateway.SandboxWechatPay | None
    alipay_config: AlipayConfig | None
    alipay: alipay_gateway.AlipaySandbox | None

    def url(self, channel: str = "", token: str | None = None, **query: str) -> str:
        path = f"{self.base}/pay/{token or self.token}" + (f"/{channel}" if channel else "")
        return path + (f"?{urlencode(query)}" if query else "")

    async def bill(self) -> tuple[str, int, int]:
        """(status, paid_fen, what the payer's line has available)."""
        async with self.core.db.transaction() as session:
            bill = await session.scalar(select(Bill).where(Bill.bill_no == self.bill_no))
            line = await session.get(CreditLine, bill.line_id)
            return bill.status, bill.paid_fen, line.limit_fen - line.used_fen


async def start_cashier(core: Core, clock: FixedClock, aiohttp_server, *, wechatpay: bool = True, alipay: bool = True,
                        sandbox_bridge: bool = True, issue=issue_bill) -> Cashier:
    """The app served on 127.0.0.1 at the core's public URL, with the bill `issue(core)` makes.
    `sandbox_bridge=False` leaves out the sandbox's stand-in for WeixinJSBridge, as outside sandbox mode."""
    port = unused_port()
    core.public_url = base = f"http://127.0.0.1:{port}"
    bill_no, token = await issue(core)
    account = WeChatAccount.sandbox(base)
    app = build_app(core, background=False, wechat=WeChatApi(core.db, account, clock=clock))
    wechatpay_config = wechatpay_sandbox = alipay_config = alipay_sandbox = None
    if wechatpay:
        wechatpay_config, wechatpay_sandbox = wechatpay_gateway.sandbox_merchant(
            clock=clock, appid=account.appid, notify_url=f"{base}/notify/wechatpay", api_base=base + WECHATPAY_MOUNT,
            retry_delays_s=(0.05, 0.05))
        app[WECHATPAY_CONFIG] = wechatpay_config
        app.add_subapp(WECHATPAY_MOUNT, wechatpay_sandbox.app())
        if sandbox_bridge:
            app[SANDBOX_WECHATPAY_PAY] = f"{WECHATPAY_MOUNT}/sandbox/pay"
    if alipay:
        alipay_config, alipay_sandbox = alipay_gateway.sandbox_merchant(
            clock=clock, notify_url=f"{base}/notify/alipay", gateway=f"{base}{alipay_gateway.MOUNT}/gateway.do",
            retry_delays_s=(0.05, 0.05))
        app[ALIPAY_CONFIG] = alipay_config
        app.add_subapp(alipay_gateway.MOUNT, alipay_sandbox.app())
    await aiohttp_server(app, port=port)
    return Cashier(core, base, bill_no, token, wechatpay_config, wechatpay_sandbox, alipay_config, alipay_sandbox)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style", "title")

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.chunks.append(data.strip())


def visible_text(html: str) -> str:
    """What a reader sees, one space between pieces of text."""
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.chunks)
