"""RFC 9110 (HTTP semantics), sections 5-9 and 15, as a checklist of what a gateway must do:
field syntax, Date, the intermediary rules for Connection, Max-Forwards and Via, methods it does
or does not implement, informational responses and the status codes of its own answers. The
section is in each test's name; every refusal is judged on the upstream's raw bytes too."""
from __future__ import annotations

import email.utils
import socket
import time

import pytest

from tests.conformance.conftest import UPSTREAM_DATE, Wire
from tests.conformance.parsers import parse_h11
from tests.conformance.test_rfc9112 import CLOSE, GET, HOST, bad_response, forwarded_once, request


def field_lines(forwarded: bytes, name: bytes) -> list[bytes]:
    head = forwarded.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[1].strip(b" \t") for line in head.split(b"\r\n")[1:]
            if line.split(b":", 1)[0].lower() == name.lower()]


# -- 5 Fields ----------------------------------------------------------------------------------

@pytest.mark.parametrize("char", [b"\x00", b"\r", b"\n"], ids=["NUL", "CR", "LF"])
def test_rfc9110_5_5_nul_cr_lf_in_field_value_is_rejected(wire: Wire, char: bytes) -> None:
    # a recipient MUST reject the message or replace each CR, LF, NUL with SP before forwarding;
    # an LF inside a value would be a field-line break, so this one is sent mid-value
    response = wire.refused(request(GET, HOST, b"X-A: a" + char + b"b"))
    assert response.status == 400 and response.closed


@pytest.mark.parametrize("char", [b"\x01", b"\x1f", b"\x7f"])
def test_rfc9110_5_5_other_controls_in_field_value_are_rejected(wire: Wire, char: bytes) -> None:
    # field-vchar excludes CTLs (HTAB aside): not a valid value, so not forwarded
    response = wire.refused(request(GET, HOST, b"X-A: a" + char + b"b"))
    assert response.status == 400


def test_rfc9110_5_5_obs_text_and_htab_are_forwarded_unchanged(wire: Wire) -> None:
    value = b"caf\xe9\tand \x80\xff"
    sent = forwarded_once(wire, request(GET, HOST, b"X-A: " + value, CLOSE))
    assert field_lines(sent, b"X-A") == [value]


@pytest.mark.parametrize("name", [b"X(A)", b"X A", b"X\"A", b"X/A", b"X\xe9", b"", b"X@A", b"X{A}"])
def test_rfc9110_5_6_2_field_name_must_be_a_token(wire: Wire, name: bytes) -> None:
    response = wire.refused(request(GET, HOST, name + b": v"))
    assert response.status == 400 and response.closed


@pytest.mark.parametrize("name", [b"nul-in-value", b"cr-in-value", b"ctl-in-value", b"bad-name"])
def test_rfc9110_5_5_invalid_response_field_is_not_forwarded(wire: Wire, name: bytes) -> None:
    # a recipient of CR, LF or NUL in a field value MUST reject the message or replace them with
    # SP before forwarding; other CTLs and a name that is not a token are invalid too. The
    # gateway rejects the response: 502, and nothing of the field reaches the client
    raw, _ = bad_response(wire, name)
    assert raw.startswith(b"HTTP/1.1 502 "), raw[:200]
    assert b"X-A" not in raw and b"X(A)" not in raw


def test_rfc9110_5_3_repeated_field_lines_keep_their_order(wire: Wire) -> None:
    # a recipient MAY combine field lines, but the order of the values is significant
    sent = forwarded_once(wire, request(GET, HOST, b"X-A: 1", b"X-B: x", b"X-A: 2, 3", CLOSE))
    assert field_lines(sent, b"X-A") == [b"1", b"2, 3"]


# -- 6 Message abstraction: Date ---------------------------------------------------------------

def assert_now_imf_fixdate(response_dates: list[bytes]) -> None:
    assert len(response_dates) == 1, response_dates
    value = response_dates[0].decode()
    # IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    assert value.endswith(" GMT") and len(value) == 29, value
    parsed = email.utils.parsedate_to_datetime(value).timestamp()
    assert abs(parsed - time.time()) < 60, value


def test_rfc9110_6_6_1_date_on_the_gateways_own_responses(wire: Wire) -> None:
    # an origin server with a clock MUST send Date in 2xx, 3xx and 4xx responses: the gateway is
    # the origin of its refusals and local answers
    assert_now_imf_fixdate(wire.refused(request(b"GET /a b HTTP/1.1", HOST)).header(b"date"))
    response, _ = wire.exchange(request(b"OPTIONS * HTTP/1.1", HOST, CLOSE))
    assert_now_imf_fixdate(response.header(b"date"))


def test_rfc9110_6_6_1_date_added_to_forwarded_response_without_one(wire: Wire) -> None:
    # a recipient with a clock that forwards a response without Date MUST add one
    response, _ = wire.exchange(request(GET, HOST, CLOSE))
    assert response.status == 200
    assert_now_imf_fixdate(response.header(b"date"))


def test_rfc9110_6_6_1_upstream_date_is_kept(wire: Wire) -> None:
    response, _ = wire.exchange(request(b"GET /with-date HTTP/1.1", HOST, CLOSE))
    assert response.header(b"date") == [UPSTREAM_DATE]


# -- 7 Routing: intermediaries -----------------------------------------------------------------

def test_rfc9110_7_6_1_connection_options_are_removed_from_the_request(wire: Wire) -> None:
    # an intermediary MUST remove the fields a Connection names, and Connection itself
    sent = forwarded_once(wire, request(GET, HOST, b"Connection: x-hop, close", b"X-Hop: 1",
                                        b"Keep-Alive: 5", b"Proxy-Connection: keep-alive",
                                        b"TE: trailers", b"X-Kept: 1"))
    names = [k for k, _ in parse_h11(sent).headers]
    for hop in (b"x-hop", b"keep-alive", b"proxy-connection", b"te", b"connection"):
        assert hop not in names, (hop, sent)
    assert b"x-kept" in names


def test_rfc9110_7_6_1_connection_options_are_removed_from_the_response(wire: Wire) -> None:
    response, _ = wire.exchange(request(b"GET /hop HTTP/1.1", HOST, CLOSE))
    assert response.header(b"x-hop") == [] and response.header(b"x-kept") == [b"1"]
    assert response.header(b"connection") == [b"close"]


def test_rfc9110_7_6_2_options_with_max_forwards_zero_is_answered_here(wire: Wire) -> None:
    # the intermediary MUST NOT forward; it MUST respond as the final recipient
    data = request(b"OPTIONS /x HTTP/1.1", HOST, b"Max-Forwards: 0", CLOSE)
    response = wire.refused(data)  # "refused" here: nothing may reach the upstream
    assert response.status == 200 and response.header(b"content-length") == [b"0"]


def test_rfc9110_7_6_2_trace_with_max_forwards_zero_is_reflected_here(wire: Wire) -> None:
    # as the final recipient of a TRACE the gateway reflects the request (RFC 9110 9.3.8)
    data = request(b"TRACE /x HTTP/1.1", HOST, b"Max-Forwards: 0", CLOSE)
    response = wire.refused(data)
    assert response.status == 200 and response.header(b"content-type") == [b"message/http"]
    assert response.body == data


@pytest.mark.parametrize("method", [b"OPTIONS", b"TRACE"])
def test_rfc9110_7_6_2_max_forwards_is_decremented(wire: Wire, method: bytes) -> None:
    # an intermediary MUST check and update the value before forwarding
    sent = forwarded_once(wire, request(method + b" / HTTP/1.1", HOST, b"Max-Forwards: 5", CLOSE))
    assert field_lines(sent, b"Max-Forwards") == [b"4"]


def test_rfc9110_7_6_2_max_forwards_is_left_alone_on_other_methods(wire: Wire) -> None:
    # only TRACE and OPTIONS are governed by it: a GET is forwarded with the field unchanged
    sent = forwarded_once(wire, request(GET, HOST, b"Max-Forwards: 0", CLOSE))
    assert field_lines(sent, b"Max-Forwards") == [b"0"]


@pytest.mark.parametrize(("version", "protocol"), [(b"HTTP/1.1", b"1.1"), (b"HTTP/1.0", b"1.0")])
def test_rfc9110_7_6_3_via_is_added_to_forwarded_requests(wire: Wire, version: bytes,
                                                          protocol: bytes) -> None:
    # an HTTP-to-HTTP gateway MUST send Via in each inbound request, with the protocol it
    # received; earlier entries stay first
    sent = forwarded_once(wire, request(b"GET / " + version, HOST, b"Via: 1.0 fred", CLOSE))
    values = b", ".join(field_lines(sent, b"Via")).split(b", ")
    assert values[0] == b"1.0 fred"
    assert len(values) == 2 and values[1].startswith(protocol + b" "), values


# -- 8 Representation: framing of what the gateway relays --------------------------------------

def test_rfc9110_8_6_no_content_length_on_204(wire: Wire) -> None:
    # a server MUST NOT send Content-Length (nor a body) in a 204
    response, _ = wire.exchange(request(b"GET /no-content HTTP/1.1", HOST, CLOSE))
    assert response.status == 204
    assert response.header(b"content-length") == [] and response.header(b"transfer-encoding") == []
    assert response.raw.endswith(b"\r\n\r\n<EOF>")


# -- 9 Methods ---------------------------------------------------------------------------------

def test_rfc9110_9_1_extension_method_is_forwarded(wire: Wire) -> None:
    # a gateway is not the origin: methods it does not know are the upstream's to judge
    sent = forwarded_once(wire, request(b"PURGE /x HTTP/1.1", HOST, CLOSE))
    assert parse_h11(sent).method == b"PURGE"


def test_rfc9110_9_3_2_head_answer_has_no_content(wire: Wire) -> None:
    # the gateway's own answer to HEAD (here a refusal after the head was parsed: 400 for a
    # dot-segment escape) carries the GET's fields but no content
    raw_response = wire.refused(request(b"HEAD /../x HTTP/1.1", HOST, CLOSE))
    assert raw_response.status == 400 and raw_response.header(b"content-length") != [b"0"]
    assert raw_response.raw.split(b"\r\n\r\n", 1)[1] in (b"<EOF>", b"<RST>")


def test_rfc9110_9_3_6_connect_never_reaches_the_upstream(wire: Wire) -> None:
    response = wire.refused(request(b"CONNECT upstream.test:443 HTTP/1.1", b"Host: upstream.test:443",
                                    body=b"\x16\x03\x01tls-hello"))
    assert response.status == 501 and response.closed


def test_rfc9110_9_3_7_options_asterisk_has_content_length_zero(wire: Wire) -> None:
    response, forwarded = wire.exchange(request(b"OPTIONS * HTTP/1.1", HOST, CLOSE))
    assert (response.status, response.header(b"content-length"), forwarded) == (200, [b"0"], [])


def test_rfc9110_9_3_8_trace_with_content_is_refused(wire: Wire) -> None:
    # a client MUST NOT send content in TRACE: the gateway, the upstream's client, refuses it
    response = wire.refused(request(b"TRACE / HTTP/1.1", HOST, b"Content-Length: 3", body=b"abc"))
    assert response.status == 400 and response.closed
    # without content, TRACE is forwarded like any method
    sent = forwarded_once(wire, request(b"TRACE / HTTP/1.1", HOST, CLOSE))
    assert parse_h11(sent).method == b"TRACE"


# -- 10 Expect ---------------------------------------------------------------------------------

def test_rfc9110_10_1_1_100_continue_is_ignored_from_http10(wire: Wire) -> None:
    # a server that receives 100-continue in an HTTP/1.0 request MUST ignore that expectation
    with socket.create_connection(("127.0.0.1", wire.port), timeout=2) as sock:
        sock.sendall(request(b"POST / HTTP/1.0", HOST, b"Content-Length: 3", b"Expect: 100-continue"))
        sock.settimeout(0.5)
        try:
            early = sock.recv(100)
        except TimeoutError:
            early = b""
        assert not early.startswith(b"HTTP/1.1 100"), early
        sock.settimeout(5)
        sock.sendall(b"abc")
        data = early
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert b" 100 " not in data.split(b"\r\n", 1)[0]


def test_rfc9110_10_1_1_100_continue_answered_once_for_http11(wire: Wire) -> None:
    with socket.create_connection(("127.0.0.1", wire.port), timeout=5) as sock:
        sock.sendall(request(b"POST / HTTP/1.1", HOST, b"Content-Length: 3", b"Expect: 100-continue", CLOSE))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in data


# -- 15 Status codes ---------------------------------------------------------------------------

def test_rfc9110_15_2_informational_responses_are_forwarded(wire: Wire) -> None:
    # a proxy MUST forward 1xx responses (unless it asked for them itself)
    response, _ = wire.exchange(request(b"GET /early-hints HTTP/1.1", HOST, CLOSE))
    assert response.raw.startswith(b"HTTP/1.1 103 ")
    assert response.status == 200


def test_rfc9110_15_2_no_informational_response_to_http10(wire: Wire) -> None:
    # a server MUST NOT send a 1xx response to an HTTP/1.0 client
    response, _ = wire.exchange(request(b"GET /early-hints HTTP/1.0", HOST))
    assert response.raw.startswith(b"HTTP/1.1 200 "), response.raw[:200]


REFUSALS = [
    (request(b"GET /a b HTTP/1.1", HOST), 400, b"Bad Request"),
    (request(b"GET /" + b"a" * 20000 + b" HTTP/1.1", HOST), 414, b"URI Too Long"),
    (request(GET, HOST, *[b"X-F%d: %s" % (i, b"v" * 1000) for i in range(64)]), 431,
     b"Request Header Fields Too Large"),
    (request(b"CONNECT a.test:443 HTTP/1.1", b"Host: a.test:443"), 501, b"Not Implemented"),
    (request(b"GET / HTTP/2.0", HOST), 505, b"HTTP Version Not Supported"),
]
REFUSAL_IDS = ["400", "414", "431", "501", "505"]


@pytest.mark.parametrize(("data", "status", "phrase"), REFUSALS, ids=REFUSAL_IDS)
def test_rfc9110_15_status_line_of_each_refusal(wire: Wire, data: bytes, status: int,
                                                phrase: bytes) -> None:
    # each refusal gets the status section 15 defines for it, with the registered phrase,
    # content that says why, and a Content-Length that frames it
    response = wire.refused(data)
    assert response.raw.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase)), response.raw[:200]
    assert response.header(b"content-length") == [str(len(response.body)).encode()]
    assert response.body


@pytest.mark.parametrize(("data", "status", "phrase"), REFUSALS, ids=REFUSAL_IDS)
def test_rfc9110_6_6_1_date_on_every_refusal(wire: Wire, data: bytes, status: int,
                                             phrase: bytes) -> None:
    # the gateway is the origin of its refusals: Date is a MUST on its 4xx, and it sends one on
    # its 5xx as well (a MAY), so every answer it makes carries the time it was made
    assert_now_imf_fixdate(wire.refused(data).header(b"date"))
