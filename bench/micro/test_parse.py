"""Request-head parsing: gateway._native.parse_request (Rust, httparse) vs httptools (llhttp,
C) and h11 (pure Python). Each parses the same 9-header browser-like request into its
method, target and header list."""
import pytest

from gateway._native import parse_request

REQUEST = (b"GET /api/v1/users/42?expand=orders&limit=10 HTTP/1.1\r\n"
           b"Host: api.example.com\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0\r\n"
           b"Accept: application/json, text/plain, */*\r\n"
           b"Accept-Language: en-US,en;q=0.9\r\n"
           b"Accept-Encoding: gzip, deflate, br\r\n"
           b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl\r\n"
           b"Cookie: session=abc123; theme=dark\r\n"
           b"X-Request-Id: 6f1c2b8e-0d1a-4a55-9a3b-1b2c3d4e5f60\r\n"
           b"Connection: keep-alive\r\n\r\n")


def test_parse_gateway(benchmark):
    head = benchmark(parse_request, REQUEST)
    assert head.method == "GET" and len(head.headers) == 9


def test_parse_httptools(benchmark):
    httptools = pytest.importorskip("httptools")

    class Proto:
        __slots__ = ("url", "headers")

        def __init__(self):
            self.url = b""
            self.headers = []

        def on_url(self, url):
            self.url += url

        def on_header(self, name, value):
            self.headers.append((name, value))

    def parse(data):
        proto = Proto()
        parser = httptools.HttpRequestParser(proto)
        parser.feed_data(data)
        return parser.get_method(), proto.url, proto.headers

    method, url, headers = benchmark(parse, REQUEST)
    assert method == b"GET" and len(headers) == 9


def test_parse_h11(benchmark):
    h11 = pytest.importorskip("h11")

    def parse(data):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        return conn.next_event()

    event = benchmark(parse, REQUEST)
    assert event.method == b"GET" and len(event.headers) == 9
