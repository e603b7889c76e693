"""What counts as the database being out of reach (storage.db.unavailable, a 503 and a retry):
the errors the real driver raises against a real socket, not exceptions built by hand."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from sqlalchemy import text

from storage.db import create_engine, unavailable


@pytest.mark.parametrize("close", ["reset", "closed"])
async def test_a_server_that_drops_the_connection_at_connect_is_unavailable(close):
    """PostgreSQL shutting down or starting accepts a connection and drops it: asyncpg's connect
    raises the socket's own ConnectionResetError, which SQLAlchemy passes on unwrapped."""
    async def drop(_reader, writer):
        if close == "reset":  # RST, not FIN
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    engine = create_engine(f"postgresql+asyncpg://xinyi@127.0.0.1:{server.sockets[0].getsockname()[1]}/xinyi")
    try:
        with pytest.raises(Exception) as raised:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert unavailable(raised.value), repr(raised.value)
    finally:
        await engine.dispose()
        server.close()


async def test_nothing_listening_is_unavailable_and_a_bug_is_not():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed
    engine = create_engine(f"postgresql+asyncpg://xinyi@127.0.0.1:{port}/xinyi")
    try:
        with pytest.raises(Exception) as raised:
            async with engine.connect():
                pass
        assert unavailable(raised.value), repr(raised.value)
    finally:
        await engine.dispose()
    assert not unavailable(ValueError("a bug, not an outage"))
