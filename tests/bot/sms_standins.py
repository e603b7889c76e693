"""Local stand-ins of the SMS providers' HTTP APIs, for the official SDKs to call on loopback.

Each checks the signature the way its provider documents it, with its own code (not the
SDK's): Tencent Cloud's TC3-HMAC-SHA256 over `content-type;host`, Alibaba Cloud's
ACS3-HMAC-SHA256 over the headers the request names. A request signed with another key is
refused as the provider refuses it. `answer` sets the outcome of the next sends: a
provider's code, or an HTTP status for a broken gateway.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

MAX_SKEW_S = 300


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class StandIn:
    keys: dict[str, str]  # secret id -> secret key
    answer: str | int = "ok"  # "ok", a provider's error code, or an HTTP status
    sent: list[dict[str, Any]] = field(default_factory=list)  # what was accepted, as the provider read it
    refused: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if isinstance(self.answer, int):
            return web.Response(status=self.answer, text="bad gateway")
        problem = self.problem(request, body)
        if problem is not None:
            self.refused += 1
            return self.error(*problem)
        sms = self.read(request, body)
        self.sent.append(sms)
        return self.reply(sms, None if self.answer == "ok" else self.answer)

    def problem(self, request: web.Request, body: bytes) -> tuple[str, str] | None:
        raise NotImplementedError

    def read(self, request: web.Request, body: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def error(self, code: str, message: str) -> web.Response:
        raise NotImplementedError

    def reply(self, sms: dict[str, Any], code: str | None) -> web.Response:
        raise NotImplementedError


class TencentStandIn(StandIn):
    """sms.tencentcloudapi.com, Action SendSms, Version 2021-01-11."""

    def problem(self, request: web.Request, body: bytes) -> tuple[str, str] | None:
        auth = request.headers.get("Authorization", "")
        algorithm, _, rest = auth.partition(" ")
        parts = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        secret_id, date, service, scope_end = (parts.get("Credential", "").split("/") + [""] * 4)[:4]
        if algorithm != "TC3-HMAC-SHA256" or parts.get("SignedHeaders") != "content-type;host" or scope_end != "tc3_request":
            return "AuthFailure.SignatureFailure", "not a TC3-HMAC-SHA256 signature"
        if secret_id not in self.keys:
            return "AuthFailure.SecretIdNotFound", "the SecretId is not found"
        timestamp = int(request.headers.get("X-TC-Timestamp", "0"))
        if abs(time.time() - timestamp) > MAX_SKEW_S or date != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d"):
            return "AuthFailure.SignatureExpire", "the signature expired"
        if (request.headers.get("X-TC-Action"), request.headers.get("X-TC-Version")) != ("SendSms", "2021-01-11"):
            return "InvalidAction", "no such action"
        canonical = (f"POST\n/\n\ncontent-type:{request.headers['Content-Type']}\nhost:{request.headers['Host']}\n\n"
                     f"content-type;host\n{_sha256(body)}")
        to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{_sha256(canonical.encode())}"
        key = _hmac(_hmac(_hmac(("TC3" + self.keys[secret_id]).encode(), date), service), "tc3_request")
        if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), parts.get("Signature", "")):
            return "AuthFailure.SignatureFailure", "the signature does not match"
        return None

    def read(self, request: web.Request, body: bytes) -> dict[str, Any]:
        given = json.loads(body)
        return {"phone": given["PhoneNumberSet"][0], "app": given["SmsSdkAppId"], "sign": given["SignName"],
                "template": given["TemplateId"], "params": given.get("TemplateParamSet", [])}

    def error(self, code: str, message: str) -> web.Response:
        return _json({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "r-1"}})

    def reply(self, sms: dict[str, Any], code: str | None) -> web.Response:
        status = {"SerialNo": "s-1", "PhoneNumber": sms["phone"], "Fee": 1, "SessionContext": "", "IsoCode": "CN",
                  "Code": code or "Ok", "Message": f"{code} for {sms['phone']}" if code else "send success"}
        return _json({"Response": {"SendStatusSet": [status], "RequestId": "r-1"}})


def _json(data: dict[str, Any]) -> web.Response:
    """As Tencent Cloud answers: `application/json` without a charset (the SDK reads errors only from that)."""
    return web.Response(body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


class AliyunStandIn(StandIn):
    """dysmsapi.aliyuncs.com, action SendSms, version 2017-05-25, RPC style, ACS3 signature."""

    def problem(self, request: web.Request, body: bytes) -> tuple[str, str] | None:
        algorithm, _, rest = request.headers.get("Authorization", "").partition(" ")
        parts = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
        signed = parts.get("SignedHeaders", "").split(";")
        if algorithm != "ACS3-HMAC-SHA256" or not {"host", "x-acs-date", "x-acs-content-sha256",
                                                    "x-acs-signature-nonce", "x-acs-action"} <= set(signed):
            return "IncompleteSignature", "the request signature does not conform to Aliyun standards"
        if parts.get("Credential") not in self.keys:
            return "InvalidAccessKeyId.NotFound", "Specified access key is not found."
        stamp = datetime.strptime(request.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs(time.time() - stamp.timestamp()) > MAX_SKEW_S:
            return "SignatureNonceUsed", "the timestamp is out of range"
        payload = request.headers["x-acs-content-sha256"]
        if payload != _sha256(body):
            return "SignatureDoesNotMatch", "the content hash does not match"
        query = "&".join(f"{key}={quote(request.query[key], safe='~')}" for key in sorted(request.query))
        headers = "".join(f"{name}:{','.join(sorted(v.strip() for v in request.headers.getall(name)))}\n" for name in signed)
        canonical = f"{request.method}\n{request.path}\n{query}\n{headers}\n{';'.join(signed)}\n{payload}"
        to_sign = f"ACS3-HMAC-SHA256\n{_sha256(canonical.encode())}"
        if not hmac.compare_digest(_hmac(self.keys[parts["Credential"]].encode(), to_sign).hex(), parts.get("Signature", "")):
            return "SignatureDoesNotMatch", "Specified signature does not match our calculation."
        if (request.headers.get("x-acs-action"), request.headers.get("x-acs-version")) != ("SendSms", "2017-05-25"):
            return "InvalidAction.NotFound", "no such action"
        return None

    def read(self, request: web.Request, body: bytes) -> dict[str, Any]:
        return {"phone": request.query["PhoneNumbers"], "sign": request.query["SignName"],
                "template": request.query["TemplateCode"], "params": json.loads(request.query.get("TemplateParam", "{}"))}

    def error(self, code: str, message: str) -> web.Response:
        return web.json_response({"Code": code, "Message": message, "RequestId": "r-1"}, status=400)

    def reply(self, sms: dict[str, Any], code: str | None) -> web.Response:
        message = f"{code} for {sms['phone']}" if code else "OK"
        return web.json_response({"Code": code or "OK", "Message": message, "BizId": "b-1", "RequestId": "r-1"})
