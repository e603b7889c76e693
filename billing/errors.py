"""Domain errors: each carries a stable code for APIs and a plain message for people."""
from __future__ import annotations


class BillingError(Exception):
    """A request the core refuses; nothing was changed."""

    code = "invalid_request"
    http_status = 400

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(BillingError):
    code = "invalid_input"


class NotFound(BillingError):
    code = "not_found"
    http_status = 404


class Conflict(BillingError):
    """The same idempotency key came back with another payload, or the state forbids it."""

    code = "conflict"
    http_status = 409


class CreditLimitExceeded(BillingError):
    code = "credit_limit_exceeded"
    http_status = 402


class NotEligible(BillingError):
    code = "not_eligible"
    http_status = 403


class IllegalTransition(BillingError):
    code = "illegal_transition"
    http_status = 409
