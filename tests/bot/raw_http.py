"""HTTP as raw bytes, for what aiohttp's client refuses to send: header values that are
not UTF-8 (the server decodes them with surrogateescape)."""
from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient


async def raw_request(client: TestClient, method: str, target: str, headers: dict[str, bytes], body: bytes = b"") -> tuple[int, bytes]:
    """One request on its own connection; the status and the body of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: {client.host}".encode(), b"Connection: close",
             b"Content-Length: %d" % len(body), *(name.encode() + b": " + value for name, value in headers.items())]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), content
