"""Who a resident is to the insurance system: the provider interface and the sandbox CSV.

Production plugs in the insurer's or the city platform's query behind `ResidentRegistry`;
the sandbox reads `XINYI_REGISTRY` (DESIGN §4.1) or the built-in demo file.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from billing.errors import InvalidInput
from billing.identity import normalise_id_number
from billing.policy import INSURANCE_STATUSES

log = logging.getLogger(__name__)

DEMO_REGISTRY = Path(__file__).with_name("data") / "demo_registry.csv"
COLUMNS = ("id_number", "name", "region", "insurance_status", "dishonest", "credit_score")


@dataclass(frozen=True)
class Resident:
    id_number: str
    name: str
    region: str
    insurance_status: str
    dishonest: bool
    credit_score: int | None


class ResidentRegistry(Protocol):
    async def lookup(self, id_number: str) -> Resident | None: ...


class CsvRegistry:
    """The whole file is read at start, a bad row an error naming its line; read again when the
    file changes (a new export of the city's registry), the old data kept if the new file is bad."""

    def __init__(self, path: Path | str = DEMO_REGISTRY) -> None:
        self.path = Path(path)
        self._read_at = self.path.stat().st_mtime_ns
        self._residents = {r.id_number: r for r in self._read()}

    def _read_again_if_changed(self) -> None:
        changed_at = self.path.stat().st_mtime_ns
        if changed_at == self._read_at:
            return
        self._read_at = changed_at
        try:
            self._residents = {r.id_number: r for r in self._read()}
        except InvalidInput as exc:
            log.error("registry not read again, the one read before stays: %s", exc.message)

    def _read(self) -> list[Resident]:
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise InvalidInput(f"{self.path}: the header must be {','.join(COLUMNS)}")
            return [self._row(line_no, row) for line_no, row in enumerate(reader, start=2)]

    def _row(self, line_no: int, row: dict[str, str]) -> Resident:
        where = f"{self.path}:{line_no}"
        try:
            id_number = normalise_id_number(row["id_number"])
        except InvalidInput:
            raise InvalidInput(f"{where}: invalid id_number") from None
        region = row["region"].strip()
        if not (len(region) == 6 and region.isdigit()):
            raise InvalidInput(f"{where}: region must be a 6-digit code")
        status = row["insurance_status"].strip()
        if status not in INSURANCE_STATUSES:
            raise InvalidInput(f"{where}: insurance_status must be one of {', '.join(INSURANCE_STATUSES)}")
        dishonest = row["dishonest"].strip()
        if dishonest not in ("0", "1"):
            raise InvalidInput(f"{where}: dishonest must be 0 or 1")
        score = row["credit_score"].strip()
        if score and not score.isdigit():
            raise InvalidInput(f"{where}: credit_score must be empty or a whole number")
        return Resident(id_number, row["name"].strip(), region, status, dishonest == "1", int(score) if score else None)

    async def lookup(self, id_number: str) -> Resident | None:
        self._read_again_if_changed()
        return self._residents.get(id_number)

    def __iter__(self):
        return iter(self._residents.values())
