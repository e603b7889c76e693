"""The hospital API's OpenAPI 3 document (DESIGN §4.3), served unsigned at /api/v1/openapi.json.

Enumerations come from the modules that check them, so the document cannot drift from the code;
tests/bot/test_openapi.py runs it against the app with schemathesis.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from billing.money import MAX_AMOUNT_FEN
from billing.payments import HOSPITAL_CHANNELS
from billing.policy import EXCLUSION_CODES
from billing.visits import CATEGORIES, VISIT_KINDS
from bot.hospital_api import MAX_SKEW_S
from storage.models import BILL_STATUSES, CHARGE_STATUSES, MEMBER_STATUSES

PATH = "/api/v1/openapi.json"

SIGNING = f"""Every request carries four headers: `X-Hospital` (the hospital's code), `X-Timestamp`
(unix seconds), `X-Nonce` (8 to 64 characters, used once) and `X-Signature`, the lowercase hex
HMAC-SHA256 with the hospital's API secret over

    METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nSHA256_HEX(BODY)

METHOD is upper case; PATH_WITH_QUERY is the path and query exactly as on the request line,
percent-encoded (e.g. `/api/v1/visits/%E9%97%A81/charges`); SHA256_HEX(BODY) is the lowercase hex SHA-256 of the exact
body bytes (of the empty string when there is no body). A timestamp more than {MAX_SKEW_S} s from
the server's clock, a nonce already used by the hospital or a signature that does not match is
refused with 401 before the body is read."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """An object with these properties, all required unless said otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required)}


TEXT_64 = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S"}
FEN = {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_FEN}
FEN_OR_ZERO = {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_FEN}
BALANCE_FEN = {"type": "integer", "minimum": 0}
TIMESTAMP = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every refusal. Some carry details: `field` (400), `reason` (403, 409), "
                       "`available_fen` (402), the unknown number (404).",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
        "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]},
    },
    "EligibilityRequest": _object({"id_number": {"type": "string", "description": "18-character resident ID number"}}),
    "Eligibility": _object({
        "eligible": {"type": "boolean", "description": "true only when the person can be served on credit now (a member "
                     "whose line serves them), or, for a person not in the programme, may enrol"},
        "reason": {"type": "string", "description": "`ok` or why not: the member's status (`suspended`, `revoked`, "
                   "`blacklisted`, `cancelled`), `malicious_debt`, `payer_not_active`, or why the person may not enrol "
                   "(`not_in_registry`, `insured_elsewhere`, `under_age`, ...)"},
        "status": {"type": "string", "enum": ["none", *MEMBER_STATUSES]},
        "limit_fen": BALANCE_FEN,
        "available_fen": BALANCE_FEN,
        "line": {"type": "string", "enum": ["own", "family", None], "nullable": True,
                 "description": "whose line a visit would draw on: `own`, `family` (the relative who pays for them), "
                                "or null (none: not on credit)"},
    }),
    "VisitRequest": _object({
        "visit_no": TEXT_64,
        "id_number": {"type": "string"},
        "department": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
        "kind": {"type": "string", "enum": list(VISIT_KINDS)},
        "exclusion": {"type": "string", "enum": [*EXCLUSION_CODES, None], "nullable": True,
                      "description": "null, or why the visit is outside what the policy covers"},
    }, required=("visit_no", "id_number", "department", "kind")),
    "Visit": _object({
        "visit_no": {"type": "string"},
        "on_credit": {"type": "boolean"},
        "reason": {"type": "string", "description": "`ok`, `family`, or why the visit is not on credit"},
        "available_fen": BALANCE_FEN,
    }),
    "ChargeRequest": _object({
        "charge_no": TEXT_64,
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "amount_fen": FEN,
        "prepaid": {"type": "boolean", "default": False},
        "self_pay_estimate_fen": {**FEN_OR_ZERO, "description": "the HIS's insurance pre-settlement of this order's "
                                  "self-pay part, at most amount_fen; the line holds it (else the policy's share of the price)"},
    }, required=("charge_no", "category", "name", "amount_fen")),
    "Charge": _object({"charge_no": {"type": "string"}, "on_credit": {"type": "boolean"}, "available_fen": BALANCE_FEN}),
    "Empty": {"type": "object", "description": "`{}`"},
    "Cancellation": _object({
        "charge_no": {"type": "string"},
        "status": {"type": "string", "enum": ["released", "refunded"]},
        "refund_fen": FEN_OR_ZERO,
        "available_fen": BALANCE_FEN,
    }),
    "CheckoutRequest": _object({
        "items": {
            "type": "array",
            "description": "The insurance split of every held charge; the three parts add up to the charge.",
            "items": _object({"charge_no": TEXT_64, "insurance_fen": FEN_OR_ZERO,
                              "personal_account_fen": FEN_OR_ZERO, "self_pay_fen": FEN_OR_ZERO}),
        },
    }),
    "Checkout": _object({
        "bill_no": {"type": "string"},
        "self_pay_fen": FEN_OR_ZERO,
        "due_at": TIMESTAMP,
        "pay_url": {"type": "string"},
    }),
    "PaymentRequest": _object({
        "payment_no": TEXT_64,
        "channel": {"type": "string", "enum": list(HOSPITAL_CHANNELS)},
        "amount_fen": FEN,
    }),
    "Bill": _object({
        "bill_no": {"type": "string"},
        "status": {"type": "string", "enum": list(BILL_STATUSES)},
        "self_pay_fen": FEN_OR_ZERO,
        "paid_fen": FEN_OR_ZERO,
        "interest_fen": {**BALANCE_FEN, "description": "Interest accrued up to now past the interest-free period "
                                                       "(whole days, on the unpaid self-pay; 0 without a financial institution)"},
        "interest_paid_fen": {**BALANCE_FEN, "description": "Of interest_fen, paid: a payment pays interest first"},
        "owed_fen": {**BALANCE_FEN, "description": "What the bill still asks for: self-pay and interest unpaid"},
        "institution": {"type": "string", "nullable": True,
                        "description": "The financial institution whose terms the bill was issued under, if any"},
        "due_at": TIMESTAMP,
        "items": {"type": "array", "items": _object({
            "charge_no": {"type": "string"},
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "name": {"type": "string"},
            "amount_fen": FEN,
            "insurance_fen": {**FEN_OR_ZERO, "nullable": True},
            "personal_account_fen": {**FEN_OR_ZERO, "nullable": True},
            "self_pay_fen": {**FEN_OR_ZERO, "nullable": True},
            "status": {"type": "string", "enum": list(CHARGE_STATUSES)},
        })},
    }),
}

ERRORS = {
    "400": "the body is not a JSON object, or a field is missing or wrong",
    "401": "missing, stale, replayed or bad signature",
    "402": "the credit line has not enough left",
    "403": "the credit line's owner is not in good standing",
    "404": "unknown visit, charge or bill",
    "409": "the number was used before with another body, or the state forbids it",
}


def _operation(summary: str, ok: tuple[str, str], errors: str, request: str | None = None,
               params: tuple[str, ...] = ()) -> dict[str, Any]:
    status, schema = ok
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [{"name": name, "in": "path", "required": True, "schema": TEXT_64} for name in params],
        "responses": {
            status: {"description": "done", "content": {"application/json": {"schema": _ref(schema)}}},
            **{code: {"description": ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}
               for code in errors.split()},
        },
    }
    if request is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(request)}}}
    return operation


DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "xinyi hospital API", "version": "1", "description": "Amounts are integer fen.\n\n" + SIGNING},
    "servers": [{"url": "/"}],
    "security": [{"hospital": [], "timestamp": [], "nonce": [], "signature": []}],
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "hospital": {"type": "apiKey", "in": "header", "name": "X-Hospital", "description": "the hospital's code"},
            "timestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp", "description": "unix seconds"},
            "nonce": {"type": "apiKey", "in": "header", "name": "X-Nonce", "description": "8 to 64 characters, single use"},
            "signature": {"type": "apiKey", "in": "header", "name": "X-Signature", "description": SIGNING},
        },
    },
    "paths": {
        "/api/v1/eligibility": {"post": _operation(
            "Can this person be served on credit now (or enrol), and how much credit is left", ("200", "Eligibility"), "400 401", "EligibilityRequest")},
        "/api/v1/visits": {"post": _operation(
            "Open a visit (idempotent on visit_no)", ("201", "Visit"), "400 401 409", "VisitRequest")},
        "/api/v1/visits/{visit_no}/charges": {"post": _operation(
            "Order an item: holds credit when the visit is on credit (idempotent on charge_no)",
            ("201", "Charge"), "400 401 402 403 404 409", "ChargeRequest", ("visit_no",))},
        "/api/v1/visits/{visit_no}/charges/{charge_no}/cancel": {"post": _operation(
            "Abandon an item: the hold is released, or the item refunded when already paid",
            ("200", "Cancellation"), "400 401 404 409", "Empty", ("visit_no", "charge_no"))},
        "/api/v1/visits/{visit_no}/checkout": {"post": _operation(
            "Leave: the insurance split posts the self-pay part as a bill, and the bill notification goes out",
            ("200", "Checkout"), "400 401 404 409", "CheckoutRequest", ("visit_no",))},
        "/api/v1/bills/{bill_no}/payments": {"post": _operation(
            "A payment at the hospital (idempotent on payment_no); answers the bill after it",
            ("200", "Bill"), "400 401 404 409", "PaymentRequest", ("bill_no",))},
        "/api/v1/bills/{bill_no}": {"get": _operation("A bill of this hospital", ("200", "Bill"), "401 404", params=("bill_no",))},
    },
}


async def serve(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, serve)
