"""Differential conformance: every request the gateway accepts reaches the upstream in bytes that
two independent parsers (h11 and llhttp) read alike, with the method, target, end-to-end fields
and body of the gateway's own parse (``gateway._native.parse_request`` on what the client sent);
every request it refuses gets the status its own parser names, and no byte of it goes upstream.

The corpus: hand-written requests for the shapes a gateway must carry (methods, target forms,
repeated and empty fields, obs-text, chunk extensions and trailers), AWS http-desync-guardian's
requests and llhttp's strict request vectors (both read from ../shared/conformance, never copied
here; their parts are skipped with a message when it is absent)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from gateway._native import HttpParseError, RequestHead, normalize_path, parse_request
from tests.conformance.conftest import Wire
from tests.conformance.parsers import Parsed, ParseError, parse_h11, parse_llhttp
from tests.conftest import CONFORMANCE

GUARDIAN = CONFORMANCE / "desync-guardian"
LLHTTP = CONFORMANCE / "llhttp" / "request"

# What the gateway adds, replaces or drops on the way: compared separately, or not at all.
REWRITTEN = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
             b"via", b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
             b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}
# llhttp only knows the registered methods; an extension method is a limit of the oracle.
LLHTTP_METHODS = {b"DELETE", b"GET", b"HEAD", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b"TRACE",
                  b"COPY", b"LOCK", b"MKCOL", b"MOVE", b"PROPFIND", b"PROPPATCH", b"SEARCH",
                  b"UNLOCK", b"BIND", b"REBIND", b"UNBIND", b"ACL", b"REPORT", b"MKACTIVITY",
                  b"CHECKOUT", b"MERGE", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE", b"UNSUBSCRIBE",
                  b"PATCH", b"PURGE", b"MKCALENDAR", b"LINK", b"UNLINK", b"SOURCE", b"QUERY"}

# RFC 3986 query characters a sender may write raw (pchar, "/" and "?"); "%" only as an escape.
QUERY_RAW = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
                      b"!$&'()*+,;=:@/?")
HEXDIG = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes


def req(line: str, *fields: str, body: bytes = b"") -> bytes:
    return (line + "\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode("latin-1") + body


HANDMADE = [
    Case("get", req("GET / HTTP/1.1", "Host: a.test")),
    Case("get-query", req("GET /p/a%20b;x=1?q=1&r=%2F&s HTTP/1.1", "Host: a.test", "Accept: */*")),
    Case("dot-segments", req("GET /a/./b/../c//d?x=/../ HTTP/1.1", "Host: a.test")),
    Case("absolute-form", req("GET http://b.test:81/abs?q HTTP/1.1", "Host: ignored.test")),
    Case("absolute-form-no-path", req("GET http://b.test HTTP/1.1", "Host: b.test")),
    Case("http10", req("GET /old HTTP/1.0", "User-Agent: x")),
    Case("http10-keepalive", req("GET /old HTTP/1.0", "Connection: keep-alive", "Host: a.test")),
    Case("head", req("HEAD /h HTTP/1.1", "Host: a.test")),
    Case("delete", req("DELETE /r/1 HTTP/1.1", "Host: a.test")),
    Case("extension-method", req("PURGE /cache HTTP/1.1", "Host: a.test")),
    Case("lowercase-method", req("get / HTTP/1.1", "Host: a.test")),
    Case("options-path", req("OPTIONS /x HTTP/1.1", "Host: a.test")),
    Case("post-length", req("POST /u HTTP/1.1", "Host: a.test", "Content-Length: 11",
                            "Content-Type: text/plain", body=b"hello world")),
    Case("post-zero-length", req("POST /u HTTP/1.1", "Host: a.test", "Content-Length: 0")),
    Case("post-leading-zeros", req("POST /u HTTP/1.1", "Host: a.test", "Content-Length: 003",
                                   body=b"abc")),
    Case("post-chunked", req("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: chunked",
                             body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")),
    Case("chunked-ext-trailer", req("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: chunked",
                                    "Trailer: X-T", body=b"3;a=b;c\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")),
    Case("chunked-uppercase-hex", req("POST /c HTTP/1.1", "Host: a.test",
                                      "Transfer-Encoding: chunked",
                                      body=b"A\r\n0123456789\r\n0\r\n\r\n")),
    Case("gzip-chunked", req("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: gzip, chunked",
                             body=b"3\r\nabc\r\n0\r\n\r\n")),
    Case("repeated-fields", req("GET / HTTP/1.1", "Host: a.test", "X-A: 1", "X-B: b", "X-A: 2",
                                "Cookie: a=1", "Cookie: b=2")),
    Case("empty-value", req("GET / HTTP/1.1", "Host: a.test", "X-Empty:", "X-Space:   ")),
    Case("ows", req("GET / HTTP/1.1", "Host: a.test", "X-A: \t v  v \t")),
    Case("obs-text", req("GET / HTTP/1.1", "Host: a.test", "X-A: caf\xe9 \x80\xff")),
    Case("odd-name-chars", req("GET / HTTP/1.1", "Host: a.test", "X-!#$%&'*+-.^_`|~: 1")),
    Case("quoted-value", req("GET / HTTP/1.1", "Host: a.test", 'X-Q: "a, b", c')),
    Case("connection-options", req("GET / HTTP/1.1", "Host: a.test", "Connection: X-Drop",
                                   "X-Drop: 1", "X-Keep: 2")),
    Case("x-forwarded-for-chain", req("GET / HTTP/1.1", "Host: a.test",
                                      "X-Forwarded-For: 203.0.113.1")),
    Case("expect-continue", req("POST /e HTTP/1.1", "Host: a.test", "Expect: 100-continue",
                                "Content-Length: 2", body=b"ok")),
    Case("ipv6-host", req("GET / HTTP/1.1", "Host: [2001:db8::1]:8080")),
    Case("pipelined", req("GET /1 HTTP/1.1", "Host: a.test") + req("GET /2 HTTP/1.1", "Host: a.test")),
    Case("long-field", req("GET / HTTP/1.1", "Host: a.test", "X-Long: " + "v" * 6000)),
    # bytes outside the URI grammar: forwarded percent-encoded, so both oracles read them
    Case("utf8-target", req("GET /na\xc3\xafve/\xe2\x82\xac?q=\xc3\xa9 HTTP/1.1", "Host: a.test")),
    Case("excluded-ascii-target", req('GET /a{b}|c\\d^e`f"g<h>[i] HTTP/1.1', "Host: a.test")),
    Case("json-query", req('GET /s?filter={"a":[1,2]}&x=a|b&p=50% HTTP/1.1', "Host: a.test")),
]


def guardian_cases() -> list[Case]:
    if not GUARDIAN.is_dir():
        return []
    import yaml

    from tests.test_conformance import build_request  # same wire form as the guardian tests
    cases = []
    for path in sorted(GUARDIAN.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            cases.append(Case(f"guardian:{path.name}:{case['name']}", build_request(case)[0]))
    return cases


def llhttp_input(block: str) -> bytes:
    """llhttp's harness transform: one trailing newline dropped, escaped newlines removed,
    newlines made CRLF, then \\r \\n \\t \\f \\xHH and octal escapes expanded."""
    text = block.removesuffix("\n").replace("\\\n", "").replace("\n", "\r\n")
    text = text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t").replace("\\f", "\f")
    text = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16) & 0xFF), text)
    text = re.sub(r"\\([0-7]{1,3})", lambda m: chr(int(m.group(1), 8) & 0xFF), text)
    return text.encode("latin-1", errors="replace")


def llhttp_cases() -> list[Case]:
    if not LLHTTP.is_dir():
        return []
    cases = []
    for path in sorted(LLHTTP.glob("*.md")):
        title, meta = "", None
        lines = path.read_text(encoding="utf-8").split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("#"):
                title, meta = line.lstrip("#").strip(), None
            elif line.strip().startswith("<!-- meta="):
                meta = json.loads(line.strip().removeprefix("<!-- meta=").removesuffix("-->"))
            elif line.startswith("```http") and meta is not None:
                j = lines.index("```", i + 1)
                block = "\n".join(lines[i + 1:j]) + "\n"
                i = j
                if meta.get("type") != "request" or meta.get("noScan") or "pause" in meta:
                    continue
                data = llhttp_input(block)
                first, _, rest = data.partition(b"\r\n")
                if first.endswith(b"HTTP/1.1") and b"\r\nhost:" not in (b"\r\n" + rest).lower():
                    data = first + b"\r\nHost: llhttp.test\r\n" + rest  # RFC 9112 3.2 needs it
                cases.append(Case(f"llhttp:{path.name}:{title}", data))
            i += 1
    return cases


CASES = HANDMADE + guardian_cases() + llhttp_cases()


def dechunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0].strip(b" \t"), 16)
        pos = eol + 2
        if size == 0:
            if not data.startswith(b"\r\n", pos):
                data.index(b"\r\n\r\n", pos)  # the trailer section must end too
            return out
        if len(data) < pos + size + 2:
            raise ValueError("chunk cut short")
        out += data[pos:pos + size]
        pos += size + 2


def own_parse(data: bytes) -> tuple[RequestHead | None, int]:
    """The gateway's parse of the first request in ``data`` and the status it refuses it with
    (0 when it accepts it). Leading empty lines are skipped, as the gateway does."""
    try:
        head = parse_request(data)
    except HttpParseError as exc:
        return None, exc.status
    return head, 0


def client_body(head: RequestHead, data: bytes) -> bytes | None:
    """The body the client sent, decoded; None if the bytes end before the body does."""
    rest = data[head.head_len:]
    if head.body_kind == "length":
        return rest[:head.content_length] if len(rest) >= head.content_length else None
    if head.body_kind == "chunked":
        try:
            return dechunk(rest)
        except ValueError:
            return None
    return b""


def escaped_query(query: bytes) -> bytes:
    """The query with every byte outside RFC 3986's grammar percent-encoded (a "%" that does not
    start an escape included), written the obvious way: what the gateway must forward."""
    out = bytearray()
    for i, b in enumerate(query):
        if b in QUERY_RAW or (b == 0x25 and len(query) > i + 2 and query[i + 1] in HEXDIG
                              and query[i + 2] in HEXDIG):
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def expected_target(head: RequestHead) -> bytes:
    """The target the gateway forwards for its parse: the normalised path (which encodes what a
    path may not hold raw) and the query escaped the same way (RFC 9112 section 3.2)."""
    path = normalize_path(head.path) if head.path else b"/"
    return path + (b"?" + escaped_query(head.query) if head.query else b"")


def end_to_end(headers: Any, hop: set[bytes]) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in headers if k.lower() not in REWRITTEN and k.lower() not in hop]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_differential_forwarded_bytes_read_alike(wire: Wire, case: Case) -> None:
    head, refusal = own_parse(case.data)
    if refusal:
        # RFC 9112/9110: the status the gateway's own parser names (400, 414, 431, 501, 505)
        response = wire.refused(case.data, timeout=2.0)
        assert response.status == refusal, (response.raw[:200], refusal)
        assert response.closed
        return
    if head is None:
        pytest.skip("the vector's head is incomplete (llhttp judges it mid-head)")
    body = client_body(head, case.data)
    if body is None:
        pytest.skip("the vector's body is incomplete (llhttp judges it mid-body)")
    # half-closed after the request: the gateway answers, then closes, with no wait for idle
    response, forwarded = wire.exchange(case.data, timeout=3.0, half_close=True)
    if response.status != 200:
        # refused after the head parsed: routing (dot-segments above the root), the body, or
        # CONNECT (501: no tunnels)
        assert response.status in (400, 413, 501), response.raw[:300]
        assert response.status != 501 or head.method == "CONNECT"
        assert not forwarded
        return
    assert forwarded, "accepted but nothing reached the upstream"
    sent = forwarded[0]
    # Each oracle reads what it can: h11 knows no transfer coding but chunked, llhttp only the
    # registered methods. Every request is read by at least one; most by both.
    readings: dict[str, Parsed] = {}
    te = [v for k, v in head.headers if k.lower() == b"transfer-encoding"]
    if not te or b",".join(te).replace(b" ", b"").lower() == b"chunked":
        try:
            readings["h11"] = parse_h11(sent)
        except ParseError as exc:
            pytest.fail(f"h11 cannot read what the gateway forwarded ({exc}): {sent!r}")
    if head.method.encode() in LLHTTP_METHODS:
        try:
            readings["llhttp"] = parse_llhttp(sent)
        except ParseError as exc:
            pytest.fail(f"llhttp cannot read what the gateway forwarded ({exc}): {sent!r}")
    assert readings, "no oracle can read this request"
    # the independent parsers read the same message, and nothing after it
    first = next(iter(readings.values()))
    for name, reading in readings.items():
        assert reading == first, (name, readings)
    assert first.trailing == b"", first
    by_h11 = first
    # ... and it is the message the gateway parsed from the client
    assert by_h11.method == head.method.encode()
    assert by_h11.target == expected_target(head)
    hop = {h.lower() for h in head.hop_by_hop}
    assert end_to_end(by_h11.headers, hop) == end_to_end(head.headers, hop)
    assert by_h11.body == body
    hosts = [v for k, v in by_h11.headers if k == b"host"]
    assert len(hosts) == 1
    if head.host is not None:
        assert hosts == [head.host]


def test_differential_corpus_holds_the_shared_vectors() -> None:
    # without this, a loader that found nothing would leave the test above passing on the
    # hand-written cases alone
    if not GUARDIAN.is_dir() or not LLHTTP.is_dir():
        pytest.skip(f"conformance data not found at {CONFORMANCE} (../shared/conformance is "
                    "absent): the differential test runs on its hand-written cases only")
    assert len(guardian_cases()) == 159  # desync-guardian's tests/*.yaml at 7dd6f37
    assert len(llhttp_cases()) >= 100  # llhttp v9.4.2's strict request vectors
