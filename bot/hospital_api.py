"""The hospital API (DESIGN §4.3): HMAC-signed JSON for HIS systems, kiosks and windows.

Every request is signed with the hospital's secret over
`METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nSHA256_HEX(BODY)`; a skew over 300 s,
a nonce seen before or a bad signature is refused with 401 and nothing changes.

The nonce is written first in the request's first transaction, not in one of its own (a
charge is then one transaction): a replay fails there, before anything is read. When that
transaction rolls back, or the request had none, it is written on its own afterwards, so
a nonce is used once whatever its request came to.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Mapping, NamedTuple

from aiohttp import web
from sqlalchemy import bindparam, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing import payments, visits
from billing.core import Core
from billing.errors import BillingError
from billing.enquiry import eligibility_report
from billing.hospitals import hospital_secret
from billing.validate import BadJson, loads_json, printable_ascii, whole_number
from storage.models import ApiNonce
from storage.prepared import Prepared

log = logging.getLogger(__name__)
MAX_SKEW_S = 300
CORE = web.AppKey("core", Core)
HOSPITAL = web.RequestKey("hospital_code", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_NONCES = ApiNonce.__table__
_PRUNE_NONCES = Prepared(delete(_NONCES).where(_NONCES.c.at < bindparam("before")))
_ADD_NONCE = Prepared(insert(_NONCES))


class ReplayedNonce(Exception):
    """A nonce used before. Not the IntegrityError behind it: `run_once` answers an IntegrityError
    by replaying the first outcome of the request's key, and a replayed nonce must get a 401."""


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **details}, status=status)


def signature(secret: str, method: str, path_qs: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join((method.upper(), path_qs, timestamp, nonce, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_headers(hospital: str, secret: str, method: str, path_qs: str, body: bytes, timestamp: int, nonce: str) -> dict[str, str]:
    """What a hospital sends; used by the sandbox hospital panel and the tests."""
    return {
        "X-Hospital": hospital,
        "X-Timestamp": str(timestamp),
        "X-Nonce": nonce,
        "X-Signature": signature(secret, method, path_qs, str(timestamp), nonce, body),
        "Content-Type": "application/json",
    }


def _record_nonce(session: Session, code: str, nonce: str, now: datetime) -> None:
    """The nonce's unique key refuses a replay."""
    try:
        _ADD_NONCE.execute(session, {"hospital_code": code, "nonce": nonce, "at": now})
    except IntegrityError:
        raise ReplayedNonce from None


async def prune_nonces(core: Core) -> None:
    """Nonces older than any timestamp still accepted can go (the scheduler calls this)."""
    await core.db.execute(_PRUNE_NONCES, {"before": core.clock.now() - timedelta(seconds=2 * MAX_SKEW_S)})


class Credentials(NamedTuple):
    code: str
    timestamp: str
    nonce: str
    signature: str


def credentials(headers: Mapping[str, str]) -> Credentials | None:
    """The four signing headers, or None unless each is printable ASCII of a sane length: such a
    request cannot be signed, and checking it further would mean encoding whatever it holds."""
    found = Credentials(*(headers.get(name, "") for name in ("X-Hospital", "X-Timestamp", "X-Nonce", "X-Signature")))
    if not (printable_ascii(found.code, 32) and whole_number(found.timestamp, 12) is not None
            and printable_ascii(found.nonce, 64) and len(found.nonce) >= 8 and printable_ascii(found.signature, 64)):
        return None
    return found


@web.middleware
async def verify_signature(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/v1/") or request.path == "/api/v1/openapi.json":
        return await handler(request)
    core = request.app[CORE]
    signed = credentials(request.headers)
    if signed is None:
        return error_response(401, "unauthorized", "X-Hospital, X-Timestamp (seconds), X-Nonce (8 to 64 characters) "
                                                   "and X-Signature are required, in printable ASCII")
    code, timestamp, nonce, given = signed
    now = core.clock.now()
    if abs(now.timestamp() - int(timestamp)) > MAX_SKEW_S:
        return error_response(401, "stale_timestamp", f"X-Timestamp is more than {MAX_SKEW_S} s away from the server's clock")
    body = await request.read()
    secret = await hospital_secret(core, code)
    expected = signature(secret or "", request.method, request.path_qs, timestamp, nonce, body)
    if secret is None or not hmac.compare_digest(expected, given.lower()):
        log.warning("hospital API: bad signature from %r for %s %s", code, request.method, request.path)
        return error_response(401, "bad_signature", "the signature does not match this request")
    request[HOSPITAL] = code
    try:
        # Spent before the request runs, in a transaction of its own: a replay is refused whatever
        # became of the first (a refusal rolls its work back; the nonce stays used).
        await core.db.run(_record_nonce, code, nonce, now)
    except ReplayedNonce:
        return error_response(401, "replayed_nonce", "this X-Nonce was already used")
    if any("\x00" in value for value in request.match_info.values()):  # no such number: PostgreSQL text cannot hold NUL
        return error_response(404, "not_found", "the path holds a NUL character")
    return await handler(request)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal of the API is `{"error", "message"}` with the right status."""
    try:
        return await handler(request)
    except BillingError as exc:
        return error_response(exc.http_status, exc.code, exc.message, **_public(exc.details))
    except web.HTTPException as exc:
        if not request.path.startswith("/api/"):
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


def _public(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, (str, int, bool)) and k != "id_number"}


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = loads_json(await request.read() or b"null")
    except BadJson as exc:
        raise BillingError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BillingError("the body must be a JSON object")
    return body


routes = web.RouteTableDef()


@routes.post("/api/v1/eligibility")
async def eligibility(request: web.Request) -> web.Response:
    body = await _json(request)
    return web.json_response(await eligibility_report(request.app[CORE], str(body.get("id_number", ""))))


@routes.post("/api/v1/visits")
async def open_visit(request: web.Request) -> web.Response:
    answer = await visits.open_visit(request.app[CORE], request[HOSPITAL], await _json(request))
    return web.json_response(answer, status=201)


@routes.post("/api/v1/visits/{visit_no}/charges")
async def post_charge(request: web.Request) -> web.Response:
    answer = await visits.post_charge(request.app[CORE], request[HOSPITAL], request.match_info["visit_no"], await _json(request))
    return web.json_response(answer, status=201)


@routes.post("/api/v1/visits/{visit_no}/charges/{charge_no}/cancel")
async def cancel_charge(request: web.Request) -> web.Response:
    await _json(request)
    info = request.match_info
    return web.json_response(await visits.cancel_charge(request.app[CORE], request[HOSPITAL], info["visit_no"], info["charge_no"]))


@routes.post("/api/v1/visits/{visit_no}/checkout")
async def checkout(request: web.Request) -> web.Response:
    answer = await visits.checkout(request.app[CORE], request[HOSPITAL], request.match_info["visit_no"], await _json(request))
    return web.json_response(answer)


@routes.post("/api/v1/bills/{bill_no}/payments")
async def pay(request: web.Request) -> web.Response:
    answer = await payments.pay_at_hospital(request.app[CORE], request[HOSPITAL], request.match_info["bill_no"], await _json(request))
    return web.json_response(answer)


@routes.get("/api/v1/bills/{bill_no}")
async def get_bill(request: web.Request) -> web.Response:
    return web.json_response(await payments.get_bill(request.app[CORE], request[HOSPITAL], request.match_info["bill_no"]))
