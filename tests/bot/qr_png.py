"""Reading back a QR code PNG without an imaging library: its size and its dark modules."""
from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_pixels(data: bytes) -> list[list[int]]:
    """The rows of a greyscale PNG (bit depth 1 or 8, not interlaced), 0 black, 1 (or 255) white."""
    assert data.startswith(SIGNATURE), "not a PNG"
    at, chunks = 8, {}
    idat = b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, payload = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        assert zlib.crc32(kind + payload) == struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0]
        if kind == b"IDAT":
            idat += payload
        else:
            chunks[kind] = payload
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert colour == 0 and depth in (1, 8) and interlace == 0 and b"IEND" in chunks
    stride = (width * depth + 7) // 8
    raw = zlib.decompress(idat)
    assert len(raw) == height * (stride + 1)
    rows, previous = [], bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - 1] if x and depth == 8 else 0
            up = previous[x]
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            else:
                assert kind == 0, f"filter {kind}"
        previous = bytes(line)
        if depth == 1:
            rows.append([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        else:
            rows.append(list(line[:width]))
    return rows


def dark_modules(data: bytes, scale: int, border: int) -> list[list[bool]]:
    """The QR matrix a PNG shows, one module per `scale` pixels inside a `border` of modules."""
    pixels = png_pixels(data)
    count = len(pixels) // scale - 2 * border
    return [[pixels[(border + row) * scale + scale // 2][(border + col) * scale + scale // 2] == 0
             for col in range(count)] for row in range(count)]
