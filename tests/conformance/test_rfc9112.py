"""RFC 9112 (HTTP/1.1 message syntax), sections 2-9, as a checklist: one test per requirement a
gateway has to meet as the server its clients talk to and as the client of its upstreams. Each
test name carries the section. Refusals are judged on the wire: the status, the connection
closed where the RFC says so, and no byte at the upstream."""
from __future__ import annotations

import gzip
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conformance.conftest import Wire
from tests.conformance.parsers import parse_h11, parse_llhttp
from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import free_port


def request(line: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


GET = b"GET / HTTP/1.1"
HOST = b"Host: example.test"
CLOSE = b"Connection: close"


def forwarded_once(wire: Wire, data: bytes) -> bytes:
    response, forwarded = wire.exchange(data)
    assert response.status == 200, response.raw[:300]
    assert len(forwarded) == 1, forwarded
    return forwarded[0]


# -- 2 Message ---------------------------------------------------------------------------------

def test_rfc9112_2_2_empty_line_before_request_line_is_ignored(wire: Wire) -> None:
    # SHOULD ignore at least one empty line (CRLF) received before the request-line
    sent = forwarded_once(wire, b"\r\n" + request(GET, HOST, CLOSE))
    assert sent.startswith(b"GET / HTTP/1.1\r\n")


def test_rfc9112_2_2_whitespace_before_first_field_is_rejected(wire: Wire) -> None:
    # MUST reject, or consume each whitespace-preceded line without processing it
    response = wire.refused(request(GET, b" " + HOST))
    assert response.status == 400 and response.closed


@pytest.mark.parametrize("data", [
    request(GET, HOST, b"X-A: a\rb"),           # bare CR in a field value
    b"GET / HTTP/1.1\rHost: example.test\r\n\r\n",  # bare CR ending the request-line
], ids=["field-value", "request-line"])
def test_rfc9112_2_2_bare_cr_is_rejected(wire: Wire, data: bytes) -> None:
    # a bare CR MUST be treated as invalid (or replaced by SP); the gateway rejects it
    response = wire.refused(data)
    assert response.status == 400 and response.closed


def test_rfc9112_2_2_bare_lf_line_endings_are_rejected(wire: Wire) -> None:
    # a recipient MAY accept bare LF; a gateway in front of parsers that do not is safer
    # refusing: a desync defence DESIGN.md requires
    response = wire.refused(b"GET / HTTP/1.1\nHost: example.test\n\n")
    assert response.status == 400 and response.closed


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.9"])
def test_rfc9112_2_3_unsupported_major_version_is_505(wire: Wire, version: bytes) -> None:
    # RFC 9110 section 15.6.6: 505 refuses the request's major version
    response = wire.refused(request(b"GET / " + version, HOST))
    assert response.status == 505


@pytest.mark.parametrize("version", [b"http/1.1", b"HTTP/1.10", b"HTTP/1", b"HTTP/1.1.1", b"HTTP /1.1"])
def test_rfc9112_2_3_malformed_version_is_400(wire: Wire, version: bytes) -> None:
    # HTTP-version = HTTP-name "/" DIGIT "." DIGIT, case-sensitive
    response = wire.refused(request(b"GET / " + version, HOST))
    assert response.status == 400 and response.closed


def test_rfc9112_2_3_higher_minor_version_is_served_as_1_1(wire: Wire) -> None:
    response, forwarded = wire.exchange(request(b"GET / HTTP/1.2", HOST, CLOSE))
    assert response.status == 200 and len(forwarded) == 1


def test_rfc9112_2_3_response_version_is_1_1(wire: Wire) -> None:
    # a server sends its own highest conformant version (RFC 9110 section 2.5): HTTP/1.1, also
    # to an HTTP/1.0 client; and the upstream is spoken to in HTTP/1.1
    response, forwarded = wire.exchange(request(b"GET / HTTP/1.0"))
    assert response.raw.startswith(b"HTTP/1.1 200 ")
    assert forwarded[0].startswith(b"GET / HTTP/1.1\r\n")


# -- 3 Request line ----------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    b"GET  / HTTP/1.1", b"GET /  HTTP/1.1", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1",
    b"GET\t/ HTTP/1.1", b"GET /", b"GET / HTTP/1.1 extra",
], ids=["double-sp-1", "double-sp-2", "trailing-sp", "leading-sp", "htab", "no-version", "extra"])
def test_rfc9112_3_request_line_is_three_single_sp_separated_parts(wire: Wire, line: bytes) -> None:
    # recipients of an invalid request-line SHOULD answer 400 (or 301), never autocorrect it
    response = wire.refused(request(line, HOST))
    assert response.status == 400 and response.closed


@pytest.mark.parametrize("method", [b"G(T", b"GE\"T", b"G@T", b"G\x01T", b"G\xc3\xa9T"])
def test_rfc9112_3_1_method_must_be_a_token(wire: Wire, method: bytes) -> None:
    response = wire.refused(request(method + b" / HTTP/1.1", HOST))
    assert response.status == 400 and response.closed


def test_rfc9112_3_1_method_is_case_sensitive_and_kept(wire: Wire) -> None:
    # "get" is another method than "GET": forwarded as received, not upper-cased
    sent = forwarded_once(wire, request(b"get / HTTP/1.1", HOST, CLOSE))
    assert sent.startswith(b"get / HTTP/1.1\r\n")


def test_rfc9112_3_2_missing_host_is_400(wire: Wire) -> None:
    # a server MUST answer 400 to an HTTP/1.1 request without Host
    response = wire.refused(request(GET, CLOSE))
    assert response.status == 400


def test_rfc9112_3_2_several_host_lines_are_400(wire: Wire) -> None:
    response = wire.refused(request(GET, HOST, b"Host: other.test"))
    assert response.status == 400


@pytest.mark.parametrize("value", [b"a b", b"user@example.test", b"example.test/path",
                                   b"example.test:80:80", b"[::1", b"exa\"mple"])
def test_rfc9112_3_2_invalid_host_value_is_400(wire: Wire, value: bytes) -> None:
    response = wire.refused(request(GET, b"Host: " + value))
    assert response.status == 400


def test_rfc9112_3_2_empty_host_is_valid(wire: Wire) -> None:
    # RFC 9110 section 7.2: an empty Host is what a client sends when the target URI has no
    # authority; it is a valid field value, not one of the 400 cases
    sent = forwarded_once(wire, request(GET, b"Host:", CLOSE))
    assert b"\r\nHost: \r\n" in sent or b"\r\nHost:\r\n" in sent


def test_rfc9112_3_2_http10_without_host_is_served(wire: Wire) -> None:
    # Host is only mandatory from HTTP/1.1 on; the upstream still gets one (RFC 9112 3.2: a
    # client MUST send Host in every HTTP/1.1 request)
    sent = forwarded_once(wire, request(b"GET / HTTP/1.0"))
    assert parse_h11(sent).method == b"GET"
    assert sum(1 for line in sent.split(b"\r\n") if line.lower().startswith(b"host:")) == 1


@pytest.mark.parametrize("target", [b"/a b", b"/a\x7f", b"/a\x00", b"/a\tb", b"/a\x1b", b"/a#frag"])
def test_rfc9112_3_2_invalid_target_characters_are_400(wire: Wire, target: bytes) -> None:
    # whitespace and controls end or break the request line, and a fragment is never sent: an
    # invalid request-line SHOULD get 400
    response = wire.refused(request(b"GET " + target + b" HTTP/1.1", HOST))
    assert response.status == 400 and response.closed


@pytest.mark.parametrize(("target", "forwarded"), [
    (b'/a"b', b"/a%22b"), (b"/a<b>", b"/a%3Cb%3E"), (b"/a{b}", b"/a%7Bb%7D"),
    (b"/a\\b", b"/a%5Cb"), (b"/a|b", b"/a%7Cb"), (b"/a^b", b"/a%5Eb"), (b"/a`b", b"/a%60b"),
    (b"/a[b]", b"/a%5Bb%5D"), (b"/caf\xc3\xa9", b"/caf%C3%A9"),
    (b'/p?q={"a":[1]}|x', b"/p?q=%7B%22a%22:%5B1%5D%7D%7Cx"),
    (b"/p?caf\xc3\xa9=50%&r=%zz&s=%2f", b"/p?caf%C3%A9=50%25&r=%25zz&s=%2f"),
    (b"/a:b@c!$&'()*+,;=?/q:@?x", b"/a:b@c!$&'()*+,;=?/q:@?x"),
], ids=['dquote', 'angle', 'brace', 'backslash', 'pipe', 'caret', 'backtick', 'bracket', 'utf8',
        'query-json', 'query-utf8-and-bare-percent', 'allowed-stay-raw'])
def test_rfc9112_3_2_target_bytes_outside_the_uri_grammar_are_forwarded_percent_encoded(
        wire: Wire, target: bytes, forwarded: bytes) -> None:
    # the request-target follows RFC 3986's grammar, and RFC 9110 section 2.2 says a sender MUST
    # NOT generate one outside it. Clients do send raw UTF-8 and the excluded ASCII characters
    # (browsers leave "{", "|", "[" raw in a query), so the gateway accepts them and forwards
    # their escapes, the one spelling the grammar allows, which both oracles read alike
    sent = forwarded_once(wire, request(b"GET " + target + b" HTTP/1.1", HOST, CLOSE))
    assert sent.startswith(b"GET " + forwarded + b" HTTP/1.1\r\n"), sent[:200]
    assert parse_h11(sent).target == forwarded
    assert parse_llhttp(sent).target == forwarded


def test_rfc9112_3_2_the_route_matched_is_the_target_forwarded(wire: Wire) -> None:
    # the route /caf\u00e9/:name (UTF-8 in the config) matches the raw and the escaped spelling
    # alike, and what is forwarded is the escaped path that route matched
    for target in (b"/caf\xc3\xa9/a{b}", b"/caf%c3%a9/a%7Bb%7d", b"/x/../caf\xc3\xa9/a{b}"):
        sent = forwarded_once(wire, request(b"GET " + target + b" HTTP/1.1", HOST, CLOSE))
        parsed = parse_h11(sent)
        assert parsed.target == b"/caf%C3%A9/a%7Bb%7D", (target, sent[:200])
        assert (b"x-route", b"encoded") in parsed.headers, target
    # a near miss is not that route
    sent = forwarded_once(wire, request(b"GET /caf\xc3\xa9x/a HTTP/1.1", HOST, CLOSE))
    assert b"x-route" not in dict(parse_h11(sent).headers)


def test_rfc9112_3_2_long_target_is_414(wire: Wire) -> None:
    # a server that receives a request-target longer than it wishes to parse MUST answer 414
    response = wire.refused(request(b"GET /" + b"a" * 20000 + b" HTTP/1.1", HOST))
    assert response.status == 414


def test_rfc9112_3_2_1_origin_form_is_forwarded_unchanged(wire: Wire) -> None:
    target = b"/a/b%20c;p=1?x=1&y=%2F&z=a/b?c"
    sent = forwarded_once(wire, request(b"GET " + target + b" HTTP/1.1", HOST, CLOSE))
    assert parse_h11(sent).target == target


def test_rfc9112_3_2_2_absolute_form_target_host_replaces_host_field(wire: Wire) -> None:
    # the server MUST ignore the received Host and use the target's; the upstream gets
    # origin-form (a gateway is the upstream's client) with that Host
    sent = forwarded_once(wire, request(b"GET http://target.test:8080/p?q=1 HTTP/1.1",
                                        b"Host: ignored.test", CLOSE))
    parsed = parse_h11(sent)
    assert parsed.target == b"/p?q=1"
    assert [v for k, v in parsed.headers if k == b"host"] == [b"target.test:8080"]


def test_rfc9112_3_2_2_absolute_form_with_userinfo_is_400(wire: Wire) -> None:
    # RFC 9110 section 4.2.4: userinfo in an http(s) URI is deprecated; a recipient SHOULD
    # treat it as an error
    response = wire.refused(request(b"GET http://user:pw@target.test/ HTTP/1.1", HOST))
    assert response.status == 400


def test_rfc9112_3_2_3_authority_form_is_only_for_connect(wire: Wire) -> None:
    response = wire.refused(request(b"GET example.test:80 HTTP/1.1", HOST))
    assert response.status == 400


def test_rfc9112_3_2_3_connect_is_refused_with_501(wire: Wire) -> None:
    # the gateway does not tunnel: CONNECT is a method it does not implement (RFC 9110 sections
    # 9.1, 9.3.6 and 15.6.2); it must never reach the upstream (before the fix it went out as
    # "CONNECT / HTTP/1.1", a request no server can read)
    response = wire.refused(request(b"CONNECT example.test:443 HTTP/1.1", b"Host: example.test:443"))
    assert response.status == 501
    assert response.closed


def test_rfc9112_3_2_4_asterisk_form_is_only_for_options(wire: Wire) -> None:
    response = wire.refused(request(b"GET * HTTP/1.1", HOST))
    assert response.status == 400


def test_rfc9112_3_2_4_options_asterisk_is_answered(wire: Wire) -> None:
    # OPTIONS * asks about the server: valid, so not a 400; answered by the gateway (it has no
    # resource to forward it for), and RFC 9110 section 9.3.7 requires Content-Length: 0 on a
    # successful response without content
    response, forwarded = wire.exchange(request(b"OPTIONS * HTTP/1.1", HOST, CLOSE))
    assert response.status == 200, response.raw[:300]
    assert response.header(b"content-length") == [b"0"]
    assert forwarded == []


# -- 5 Field syntax ----------------------------------------------------------------------------

def test_rfc9112_5_1_whitespace_before_colon_is_400(wire: Wire) -> None:
    # a server MUST reject with 400 any whitespace between a field name and the colon
    for field in (b"X-A : 1", b"X-A\t: 1", b"Host : example.test"):
        response = wire.refused(request(GET, HOST, field))
        assert response.status == 400 and response.closed, field


def test_rfc9112_5_1_field_value_ows_is_not_part_of_the_value(wire: Wire) -> None:
    sent = forwarded_once(wire, request(GET, HOST, b"X-A: \t value with  inner \t space \t ", CLOSE))
    assert (b"x-a", b"value with  inner \t space") in parse_h11(sent).headers


def test_rfc9112_5_2_obs_fold_is_rejected(wire: Wire) -> None:
    # a server MUST reject a request with obs-fold (400) or replace each fold with SP
    for fold in (b"X-A: a\r\n b", b"X-A: a\r\n\tb"):
        response = wire.refused(request(GET, HOST, fold))
        assert response.status == 400 and response.closed


def test_rfc9112_5_field_section_too_large_is_431(wire: Wire) -> None:
    # RFC 9110 section 15.5.21 (RFC 6585): the header section is larger than the server accepts
    fields = [b"X-F%d: %s" % (i, b"v" * 1000) for i in range(64)]
    response = wire.refused(request(GET, HOST, *fields))
    assert response.status == 431


def bad_response(wire: Wire, name: bytes) -> tuple[bytes, bytes]:
    """What the client got for a request the upstream answers with BAD_RESPONSES[name], and the
    upstream connection's bytes from that request on (read after three more requests, so a
    connection the gateway pooled again would have carried one of them)."""
    marker = b"/bad-response/" + name
    response, forwarded = wire.exchange(request(b"GET " + marker + b" HTTP/1.1", HOST, CLOSE))
    assert len(forwarded) == 1 and marker in forwarded[0]
    for i in range(3):
        forwarded_once(wire, request(b"GET /after-bad-response/%d HTTP/1.1" % i, HOST, CLOSE))
    upstream = next(bytes(c) for c in wire.upstream.raw_connections if marker in c)
    return response.raw, upstream[upstream.index(marker):]


def upstream_closed(wire: Wire, name: bytes) -> bool:
    """Whether the gateway closed the upstream connection that carried /bad-response/name."""
    index = next(i for i, c in enumerate(wire.upstream.raw_connections)
                 if b"/bad-response/" + name in c)
    deadline = time.monotonic() + 2.0
    while index not in wire.upstream.peer_closed and time.monotonic() < deadline:
        time.sleep(0.02)
    return index in wire.upstream.peer_closed


def test_rfc9112_5_1_response_whitespace_before_colon_is_not_forwarded(wire: Wire) -> None:
    # a proxy MUST remove whitespace between a response's field name and colon before
    # forwarding; the gateway discards such a response: 502, and nothing of it reaches the client
    raw, _ = bad_response(wire, b"space-before-colon")
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:200]
    assert b"X-A" not in raw


def test_rfc9112_5_2_response_obs_fold_is_502(wire: Wire) -> None:
    # a gateway receiving obs-fold in a response MUST discard it and answer 502, or unfold it
    raw, _ = bad_response(wire, b"obs-fold")
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:200]
    assert b"X-A" not in raw


# -- 6 Message body ----------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    [b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: chunked", b"Connection: keep-alive"],
    [b"Content-Length: 15", b"Transfer-Encoding: chunked"],
], ids=["chunked", "keep-alive-asked", "with-content-length"])
def test_rfc9112_6_1_transfer_encoding_in_http10_is_faulty_framing(
        wire: Wire, fields: list[bytes]) -> None:
    # a server that receives an HTTP/1.0 message with Transfer-Encoding MUST treat its framing
    # as faulty, even if a Content-Length is present, and close the connection after it
    # (whatever the client asked for): 400, nothing forwarded, closed
    response = wire.refused(request(b"POST / HTTP/1.0", HOST, *fields,
                                    body=b"3\r\nabc\r\n0\r\n\r\n"))
    assert response.status == 400 and response.closed
    assert response.header(b"connection") == [b"close"]


@pytest.mark.parametrize("codings", [b"gzip", b"chunked, gzip", b"deflate", b"identity"])
def test_rfc9112_6_3_chunked_not_final_is_400_and_close(wire: Wire, codings: bytes) -> None:
    # the body length cannot be determined: the server MUST answer 400 and close
    response = wire.refused(request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: " + codings,
                                    body=b"abc"))
    assert response.status == 400 and response.closed


def test_rfc9112_6_3_content_length_with_transfer_encoding_closes(wire: Wire) -> None:
    # a server MAY reject CL+TE; either way it MUST close the connection after responding
    response = wire.refused(request(b"POST / HTTP/1.1", HOST, b"Content-Length: 5",
                                    b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"))
    assert response.status == 400 and response.closed


@pytest.mark.parametrize("value", [b"abc", b"-1", b"+3", b"3 3", b"0x3", b"3, 4", b"1e3",
                                   b"99999999999999999999999"])
def test_rfc9112_6_3_invalid_content_length_is_400_and_close(wire: Wire, value: bytes) -> None:
    response = wire.refused(request(b"POST / HTTP/1.1", HOST, b"Content-Length: " + value, body=b"abc"))
    assert response.status == 400 and response.closed


def test_rfc9112_6_3_differing_content_lengths_are_400(wire: Wire) -> None:
    response = wire.refused(request(b"POST / HTTP/1.1", HOST, b"Content-Length: 3",
                                    b"Content-Length: 4", body=b"abcd"))
    assert response.status == 400 and response.closed


def test_rfc9112_6_3_request_without_framing_has_no_body(wire: Wire) -> None:
    # neither CL nor TE: the body length is 0, and what follows is the next request
    data = request(b"POST / HTTP/1.1", HOST) + request(b"GET /second HTTP/1.1", HOST, CLOSE)
    response, forwarded = wire.exchange(data)
    assert [parse_h11(f).target for f in forwarded] == [b"/", b"/second"]
    assert parse_h11(forwarded[0]).body == b""


def test_rfc9112_6_3_request_body_too_large_is_413(tmp_path_factory: pytest.TempPathFactory) -> None:
    with RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", read_body=True) as up:
        port = free_port()
        config = base_config(port, up.port, client_max_body_size=100)
        with GatewayProcess(tmp_path_factory.mktemp("413"), config, workers=1):
            raw = raw_exchange(port, request(b"POST / HTTP/1.1", HOST, b"Content-Length: 101",
                                             body=b"x" * 101))
        assert raw.startswith(b"HTTP/1.1 413 Content Too Large\r\n"), raw[:200]
        assert up.raw_connections == [] or not any(up.raw_connections)


@pytest.mark.parametrize("name", [b"invalid-length", b"differing-lengths", b"length-list"])
def test_rfc9112_6_3_response_with_invalid_content_length_is_502_and_closes_upstream(
        wire: Wire, name: bytes) -> None:
    # a proxy receiving a response with an invalid Content-Length MUST close the connection to
    # the server, discard the response and send 502: the upstream connection carries nothing more
    raw, upstream = bad_response(wire, name)
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:200]
    assert upstream.count(b" HTTP/1.1\r\n") == 1, upstream
    assert upstream_closed(wire, name)


def test_rfc9112_6_3_response_with_length_and_chunked_is_not_relayed_with_both(wire: Wire) -> None:
    # Transfer-Encoding overrides Content-Length and a sender MUST remove the Content-Length
    # before forwarding such a message; the gateway refuses it whole (502, a desync defence),
    # and never lets both reach the client
    raw, upstream = bad_response(wire, b"length-and-chunked")
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:200]
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert not (b"\r\ncontent-length:" in head and b"\r\ntransfer-encoding:" in head)
    assert upstream.count(b" HTTP/1.1\r\n") == 1, upstream
    assert upstream_closed(wire, b"length-and-chunked")


# An upstream answer whose final transfer coding is not chunked: it ends when the upstream
# closes. Bytes that look like chunk framing and an empty chunk sit in the payload, so a reader
# that took the body for chunked would stop early or fail.
GZIP_PAYLOAD = b"0\r\n\r\n" + b"payload read until the upstream closes; " * 200
GZIP_BODY = gzip.compress(GZIP_PAYLOAD, mtime=0)


def close_delimited_answer(head: bytes) -> list[bytes]:
    """/unframed: no framing field at all (6.3 point 7); else gzip-coded (point 4)."""
    if head.startswith(b"GET /unframed "):
        return [b"HTTP/1.1 200 OK\r\n\r\n", GZIP_PAYLOAD[:100], GZIP_PAYLOAD[100:]]
    third = len(GZIP_BODY) // 3
    return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", GZIP_BODY[:third],
            GZIP_BODY[third:2 * third], GZIP_BODY[2 * third:]]


@pytest.fixture(scope="module")
def close_delimited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A gateway (its port) in front of an upstream whose answers end when it closes."""
    with RawUpstream(close_delimited_answer, close_after=True) as upstream:
        port = free_port()
        with GatewayProcess(tmp_path_factory.mktemp("te-gzip"), base_config(port, upstream.port),
                            workers=1):
            yield port


def dechunk(data: bytes) -> bytes:
    body, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return body
        body += data[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


def test_rfc9112_6_3_response_with_final_coding_not_chunked_is_read_until_close(
        close_delimited: int) -> None:
    # 6.3 point 4: a response whose final transfer coding is not chunked is delimited by the
    # server's close (as point 7's unframed one is). The gateway reads it to the close and relays
    # it framed so the client reads the same: its transfer coding named (6.1: the coding is a
    # property of the message), no Content-Length, and the end its close or a final chunk
    raw = raw_exchange(close_delimited, request(GET, HOST), timeout=5)
    closed = raw.endswith(b"<EOF>")
    head, _, rest = raw.removesuffix(b"<EOF>").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    fields = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
    assert not [v for k, _, v in fields if k.lower() == b"content-length"], head
    codings = [c.strip(b" \t").lower() for k, _, v in fields if k.lower() == b"transfer-encoding"
               for c in v.split(b",")]
    if codings[-1:] == [b"chunked"]:
        body, codings = dechunk(rest), codings[:-1]
    else:
        assert closed, "a close-delimited body and the connection left open"
        body = rest
    assert codings == [b"gzip"], head
    assert body == GZIP_BODY and gzip.decompress(body) == GZIP_PAYLOAD


def chunked_coded_answer(head: bytes) -> list[bytes]:
    """gzip under a final chunked, named in one field or (/two-fields) in two."""
    fields = (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
              if head.startswith(b"GET /two-fields ") else b"Transfer-Encoding: gzip, chunked\r\n")
    third = len(GZIP_BODY) // 3
    pieces = [GZIP_BODY[:third], GZIP_BODY[third:2 * third], GZIP_BODY[2 * third:]]
    return [b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n",
            *(b"%x;piece\r\n%b\r\n" % (len(p), p) for p in pieces), b"0\r\n\r\n"]


@pytest.fixture(scope="module")
def chunked_coded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A gateway (its port) in front of an upstream that answers in gzip under a final chunked
    and keeps its connection open: only the last chunk ends the body."""
    with RawUpstream(chunked_coded_answer, close_after=False) as upstream:
        port = free_port()
        with GatewayProcess(tmp_path_factory.mktemp("te-gzip-chunked"),
                            base_config(port, upstream.port), workers=1):
            yield port


@pytest.mark.parametrize("path", [b"/one-field", b"/two-fields"])
def test_rfc9112_6_3_response_with_codings_under_final_chunked_is_chunked(
        chunked_coded: int, path: bytes) -> None:
    # 6.3 point 4: chunked is the final coding, so the body ends with its last chunk, not the
    # upstream's close. The gateway does not decode the gzip under it, so the client is sent the
    # whole list (6.1: the codings are a property of the message) and the body in them; with
    # `Connection: close` it closes once the last chunk is relayed
    raw = raw_exchange(chunked_coded, request(b"GET " + path + b" HTTP/1.1", HOST,
                                              b"Connection: close"), timeout=5)
    assert raw.endswith(b"<EOF>"), f"the body's end not found: {raw[:300]!r}"
    head, _, rest = raw.removesuffix(b"<EOF>").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    fields = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
    assert not [v for k, _, v in fields if k.lower() == b"content-length"], head
    codings = [c.strip(b" \t").lower() for k, _, v in fields if k.lower() == b"transfer-encoding"
               for c in v.split(b",")]
    assert codings == [b"gzip", b"chunked"], head
    assert rest.endswith(b"0\r\n\r\n")
    body = dechunk(rest)
    assert body == GZIP_BODY and gzip.decompress(body) == GZIP_PAYLOAD


@pytest.mark.parametrize("path", [b"/one-field", b"/two-fields"])
def test_rfc9112_6_1_codings_under_chunked_are_not_sent_to_http10_client(
        chunked_coded: int, path: bytes) -> None:
    # as for a final coding other than chunked: an HTTP/1.0 client may not be sent a transfer
    # coding and the gateway does not decode gzip, so 502 and none of the body
    raw = raw_exchange(chunked_coded, request(b"GET " + path + b" HTTP/1.0", HOST), timeout=5)
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:300]
    assert b"transfer-encoding" not in raw.lower() and GZIP_BODY[:64] not in raw


def test_rfc9112_6_1_transfer_coded_response_is_not_sent_to_http2_client(
        close_delimited: int, chunked_coded: int) -> None:
    # HTTP/2 has no transfer codings (RFC 9113 8.2.2): 502 for a coded body however it is framed
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    for port, path in ((close_delimited, "/"), (chunked_coded, "/one-field")):
        proc = subprocess.run([curl, "-sS", "-v", "--http2-prior-knowledge",
                               f"http://127.0.0.1:{port}{path}"],
                              capture_output=True, timeout=20, text=True)
        assert "< HTTP/2 502" in proc.stderr, proc.stderr
        assert "transfer-encoding" not in proc.stderr.lower()


def test_rfc9112_6_3_response_without_framing_is_read_until_close(close_delimited: int) -> None:
    # 6.3 point 7: neither Transfer-Encoding nor Content-Length, so the body is every byte
    # before the server's close; relayed whole and, unframed, ended by the gateway's close
    raw = raw_exchange(close_delimited, request(b"GET /unframed HTTP/1.1", HOST), timeout=5)
    assert raw.endswith(b"<EOF>"), raw[-100:]
    head, _, body = raw.removesuffix(b"<EOF>").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert b"\r\ncontent-length:" not in head.lower() and b"\r\ntransfer-encoding:" not in head.lower()
    assert body == GZIP_PAYLOAD


def test_rfc9112_6_1_transfer_coded_response_is_not_sent_to_http10_client(
        close_delimited: int) -> None:
    # a server MUST NOT send a response with Transfer-Encoding unless the request is HTTP/1.1;
    # the gateway does not decode codings, so an HTTP/1.0 client gets 502, none of the body
    raw = raw_exchange(close_delimited, request(b"GET / HTTP/1.0", HOST), timeout=5)
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:300]
    assert b"transfer-encoding" not in raw.lower() and GZIP_BODY[:64] not in raw


# -- 7 Chunked transfer coding -----------------------------------------------------------------

def test_rfc9112_7_1_1_unknown_chunk_extensions_are_ignored(wire: Wire) -> None:
    # a recipient MUST ignore unrecognized chunk extensions: the body is read through them
    sent = forwarded_once(wire, request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", CLOSE,
                                        body=b"3;name=value;flag\r\nabc\r\n0\r\n\r\n"))
    assert parse_h11(sent).body == b"abc"


@pytest.mark.parametrize("body", [b"3\r\nabcX\r\n0\r\n\r\n", b"zz\r\nabc\r\n0\r\n\r\n",
                                  b"-3\r\nabc\r\n0\r\n\r\n", b"3\nabc\n0\n\n",
                                  b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n"],
                         ids=["no-crlf-after-data", "bad-size", "negative", "bare-lf", "overflow"])
def test_rfc9112_7_1_invalid_chunked_body_ends_the_connection(wire: Wire, body: bytes) -> None:
    # the framing cannot be trusted past the error: 400 if nothing was answered yet, and the
    # connection closed either way; never a second request read out of the broken body
    response, forwarded = wire.exchange(request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                                body=body + request(b"GET /smuggled HTTP/1.1", HOST)))
    assert response.closed
    assert all(b"/smuggled" not in f for f in forwarded), forwarded
    assert response.status in (400, 502), response.raw[:300]


# -- 9 Connection management -------------------------------------------------------------------

def test_rfc9112_9_3_keep_alive_by_default_in_http11(wire: Wire) -> None:
    with socket.create_connection(("127.0.0.1", wire.port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(request(GET, HOST))
            data = b""
            while not data.endswith(b"ok"):
                chunk = sock.recv(65536)
                assert chunk, "the connection was closed after an HTTP/1.1 response"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")


def test_rfc9112_9_3_http10_closes_unless_keep_alive(wire: Wire) -> None:
    response, _ = wire.exchange(request(b"GET / HTTP/1.0"))
    assert response.closed
    response, _ = wire.exchange(request(b"GET / HTTP/1.0", b"Connection: keep-alive"), timeout=1.0)
    assert not response.closed and response.header(b"connection") == [b"keep-alive"]


def test_rfc9112_9_3_2_pipelined_responses_are_in_request_order(wire: Wire) -> None:
    data = b"".join(request(b"GET /p%d HTTP/1.1" % i, HOST) for i in range(5)) + \
        request(b"GET /with-date HTTP/1.1", HOST, CLOSE)
    response, forwarded = wire.exchange(data)
    assert [parse_h11(f).target for f in forwarded] == [b"/p%d" % i for i in range(5)] + [b"/with-date"]
    assert response.raw.count(b"HTTP/1.1 200 OK") == 6 and response.closed


def test_rfc9112_9_6_close_option_closes_after_the_response(wire: Wire) -> None:
    # a server that receives "close" MUST initiate closure after the final response, and not
    # process further requests on that connection
    data = request(GET, HOST, CLOSE) + request(b"GET /after-close HTTP/1.1", HOST)
    response, forwarded = wire.exchange(data)
    assert response.status == 200 and response.closed
    assert response.header(b"connection") == [b"close"]
    assert len(forwarded) == 1 and b"/after-close" not in forwarded[0]


def test_rfc9112_9_6_refusal_says_close_and_closes(wire: Wire) -> None:
    # a server that sends "close" MUST close the connection after that response
    response = wire.refused(request(b"GET /a b HTTP/1.1", HOST))
    assert response.header(b"connection") == [b"close"] and response.closed
