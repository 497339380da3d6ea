"""Master <-> worker control messages: length-prefixed msgpack frames over a Unix socketpair.
Config snapshots travel this way with a version; workers answer with the version they run."""
from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

_HEADER = struct.Struct("!I")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
MAX_FRAME = 1 << 30


def encode_frame(message: dict[str, Any]) -> bytes:
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None when the peer closed the channel."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ValueError(f"control frame of {size} bytes")
        return _decoder.decode(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None
