"""What every service function needs: the database, the policy, the clock and the keys."""
from __future__ import annotations

from dataclasses import dataclass, field

from billing.clock import Clock, SystemClock
from billing.pii import PiiCipher
from billing.policy import Policy
from billing.registry import ResidentRegistry
from storage.db import Database


@dataclass
class Core:
    db: Database
    policy: Policy
    pii: PiiCipher
    registry: ResidentRegistry
    clock: Clock = field(default_factory=SystemClock)
    public_url: str = "http://127.0.0.1:8080"
    # Hospital codes never change their row: remembering the id saves a query on every charge.
    hospital_ids: dict[str, int] = field(default_factory=dict, repr=False)
    hospital_secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def pay_url(self, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/pay/{token}"
