"""The hospital API's OpenAPI document: valid, complete, and true of the running app (schemathesis)."""
from __future__ import annotations

import asyncio
import secrets
from itertools import product

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from billing.members import enrol
from bot.app import build_app
from bot.hospital_api import signed_headers
from bot.openapi import DOCUMENT, PATH

HOSPITAL, SECRET = "H1", "hospital-secret-0123456789"
PATIENT = "110105198503120012"


def test_the_document_is_valid_openapi():
    validate(DOCUMENT)


async def test_every_api_route_is_documented_and_the_document_is_served_unsigned(aiohttp_client, make_core):
    app = build_app(await make_core(), background=False)
    served = {(route.method, route.resource.canonical) for route in app.router.routes()
              if route.resource.canonical.startswith("/api/v1/") and route.method != "HEAD"}
    documented = {(method.upper(), path) for path, operations in DOCUMENT["paths"].items() for method in operations}
    assert served - {("GET", PATH)} == documented
    response = await (await aiohttp_client(app)).get(PATH)
    assert response.status == 200 and await response.json() == DOCUMENT


class HospitalSigner(requests.auth.AuthBase):
    """Signs the request exactly as sent, as a hospital's HIS does, with a fresh nonce."""

    def __init__(self, clock):
        self.clock = clock

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        request.headers.update(signed_headers(HOSPITAL, SECRET, request.method, request.path_url, body,
                                              int(self.clock.now().timestamp()), secrets.token_hex(8)))
        return request


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _send(case, base_url: str, signer: HospitalSigner):
    response = case.call(base_url=base_url, auth=signer)
    assert response.status_code != 401, response.text  # the signing itself must hold
    case.validate_response(response, checks=CHECKS)
    return response


def _fuzz(schema, base_url: str, signer: HospitalSigner, known: dict[str, list[str]]) -> None:
    """Every operation, valid and invalid generated requests. Path numbers are half the time ones
    the app knows and ID numbers always real ones, so answers past 404 and 400 are checked too."""
    for operation, mode in product((result.ok() for result in schema.get_all_operations()), GenerationMode):

        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy(mode), numbers=st.fixed_dictionaries(
            {name: st.sampled_from(values) for name, values in known.items()}), use_known=st.booleans())
        def check(case, numbers, use_known):
            if use_known:
                case.path_parameters = {name: numbers[name] for name in case.path_parameters or {}}
            if isinstance(case.body, dict) and "id_number" in case.body:
                case.body["id_number"] = numbers["id_number"]
            _send(case, base_url, signer)

        check()


def _seed(schema, base_url: str, signer: HospitalSigner) -> str:
    """V1 open with a held charge C1 that leaves 60 yuan of credit; V2 checked out with C2 on its bill."""
    def call(path, body, **path_parameters):
        case = schema[path]["POST"].Case(path_parameters=path_parameters, body=body)
        response = _send(case, base_url, signer)
        assert response.status_code in (200, 201), response.text
        return response.json()

    for visit_no, charge_no, amount_fen in (("V1", "C1", 194000), ("V2", "C2", 5000)):
        call("/api/v1/visits", {"visit_no": visit_no, "id_number": PATIENT, "department": "内科", "kind": "outpatient"})
        call("/api/v1/visits/{visit_no}/charges",
             {"charge_no": charge_no, "category": "lab", "name": "血常规", "amount_fen": amount_fen}, visit_no=visit_no)
    split = {"charge_no": "C2", "insurance_fen": 3000, "personal_account_fen": 0, "self_pay_fen": 2000}
    bill_no = call("/api/v1/visits/{visit_no}/checkout", {"items": [split]}, visit_no="V2")["bill_no"]
    call("/api/v1/bills/{bill_no}/payments", {"payment_no": "P1", "channel": "kiosk", "amount_fen": 500}, bill_no=bill_no)
    return bill_no


@pytest.fixture
async def served(make_core, clock):
    """The app on a loopback port, as schemathesis (synchronous, in a thread) reaches it."""
    core = await make_core()
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    runner = web.AppRunner(build_app(core, background=False))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield schemathesis.openapi.from_dict(DOCUMENT), "http://{}:{}".format(*runner.addresses[0][:2]), HospitalSigner(clock)
    await runner.cleanup()


async def test_the_app_answers_as_documented(served):
    schema, base_url, signer = served
    bill_no = await asyncio.to_thread(_seed, schema, base_url, signer)
    known = {"visit_no": ["V1", "V2"], "charge_no": ["C1", "C2"], "bill_no": [bill_no],
             "id_number": [PATIENT, "110105194908150027", "110107197001010049"]}  # enrolled, not, dishonest
    await asyncio.to_thread(_fuzz, schema, base_url, signer, known)


async def test_nul_characters_are_refused_not_sent_to_the_database(served):
    """PostgreSQL text cannot hold NUL: the API answers 400 or 404 instead of failing with 500."""
    schema, base_url, signer = served
    visit = {"visit_no": "V1", "id_number": PATIENT, "department": "内\x00科", "kind": "outpatient"}
    cases = [schema["/api/v1/visits"]["POST"].Case(body=visit),
             schema["/api/v1/bills/{bill_no}"]["GET"].Case(path_parameters={"bill_no": "B\x00"})]
    assert [(await asyncio.to_thread(_send, case, base_url, signer)).status_code for case in cases] == [400, 404]
