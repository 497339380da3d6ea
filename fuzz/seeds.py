"""The vectors the fuzzers start from: the shared conformance data (AWS http-desync-guardian's
requests, llhttp's request and response vectors, read from ../shared/conformance and never
copied into the repository) and the hand-written requests of the differential test.

Used by make_seeds.py (the cargo-fuzz corpora) and proxy_fuzz.py (the whole-proxy fuzzer).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.conformance.test_differential import (  # noqa: E402
    HANDMADE,
    guardian_cases,
    llhttp_cases,
    llhttp_input,
)
from tests.conftest import CONFORMANCE  # noqa: E402

LLHTTP_RESPONSES = CONFORMANCE / "llhttp" / "response"

# Our own response shapes: every framing the gateway proxies.
OWN_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
    b"3;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
    b"HTTP/1.0 200 OK\r\n\r\nold",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
]


def conformance_present() -> bool:
    return CONFORMANCE.is_dir()


def requests() -> list[bytes]:
    """Whole requests (head and body) from the tests and the shared vectors."""
    return [c.data for c in HANDMADE + guardian_cases() + llhttp_cases()]


def responses() -> list[bytes]:
    """Whole responses: our own shapes and llhttp's response vectors."""
    out = list(OWN_RESPONSES)
    if not LLHTTP_RESPONSES.is_dir():
        return out
    for path in sorted(LLHTTP_RESPONSES.glob("*.md")):
        lines = path.read_text(encoding="utf-8").split("\n")
        meta = None
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("#"):
                meta = None
            elif line.strip().startswith("<!-- meta="):
                meta = json.loads(line.strip().removeprefix("<!-- meta=").removesuffix("-->"))
            elif line.startswith("```http") and meta is not None:
                j = lines.index("```", i + 1)
                if meta.get("type") == "response" and "pause" not in meta:
                    out.append(llhttp_input("\n".join(lines[i + 1:j]) + "\n"))
                i = j
            i += 1
    return out


def chunked_bodies() -> list[bytes]:
    """What follows the head of every chunked message above."""
    out = [b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"1;ext=\"q\\\"x\"\r\na\r\n0\r\nT: v\r\n\r\n"]
    for message in requests() + responses():
        head, sep, body = message.partition(b"\r\n\r\n")
        if sep and b"chunked" in head.lower():
            out.append(body)
    return out


def paths() -> list[bytes]:
    """The request targets' paths (query dropped) of the requests above."""
    out = {b"/", b"/a/./b/../c//d", b"/%61dmin", b"/a/%2e%2E/b", b"/a/%2F/b/", b"/x/.."}
    for message in requests():
        parts = message.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) >= 2:
            out.add(parts[1].split(b"?", 1)[0])
    return sorted(out)


def configs() -> list[bytes]:
    """Config files: the default one and every YAML example of the README."""
    out = [(REPO / "gateway" / "config" / "default.yaml").read_bytes()]
    blocks = (REPO / "README.md").read_text(encoding="utf-8").split("```yaml\n")[1:]
    out += [block.split("```", 1)[0].encode() for block in blocks]
    out += [p.read_bytes() for p in sorted((REPO / "fuzz" / "seeds" / "config").glob("*.yaml"))]
    return out
